"""What failed in a `molecule test` run, in a few lines: the failed tests from the verifier's JUnit report and the
failed Ansible tasks from the run's log. scripts/molecule-test.sh prints it last, where the tail of a CI log
shows it.

Usage: python scripts/molecule_failures.py LOG [JUNIT_XML]
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Molecule frames each line of a step's output with "│ " (and wraps long lines).
FRAME = re.compile(r"^\s*│ ?")
TASK = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<name>.*?)\]")
FAILED_TASK = re.compile(r"^(fatal|failed): \[(?P<host>[^\]]+)\]")
NEXT_ITEM = re.compile(r"^(TASK|PLAY|RUNNING HANDLER) \[|^(ok|changed|skipping|fatal|failed): \[")
# "<scenario> ➜ <step>: Executing": the verify step's output is pytest's (its failures come from the report).
STEP = re.compile(r"➜ (?P<step>\w+): Executing$")
IDEMPOTENCE_TASK = re.compile(r"^\s*\* \[[^\]]+\] => ")
MESSAGE_LINES = 8  # lines of each failure's message
LINE_CHARS = 300  # a line longer than this is cut (an assertion may show a whole message)


def log_lines(text: str) -> list[str]:
    return [FRAME.sub("", ANSI.sub("", line)).rstrip() for line in text.splitlines()]


def failed_tasks(lines: list[str]) -> list[str]:
    """Each failed task that was not ignored, outside the verify step: its name, host and the start of what
    Ansible said."""
    out, task, step = [], "?", ""
    for number, line in enumerate(lines):
        if match := STEP.search(line):
            step = match["step"]
        elif step == "verify":
            continue
        elif match := TASK.match(line):
            task = match["name"]
        elif match := FAILED_TASK.match(line):
            rest = lines[number + 1:]
            end = next((i for i, later in enumerate(rest) if NEXT_ITEM.match(later)), len(rest))
            if any(later.startswith("...ignoring") for later in rest[:end + 1]):
                continue
            out.append(f"task {task!r} failed on {match['host']}:")
            out.extend("    " + text[:LINE_CHARS] for text in [line, *rest[:min(end, MESSAGE_LINES)]] if text)
    return out


def not_idempotent(lines: list[str]) -> list[str]:
    """The tasks that changed on the second run, as molecule's idempotence step lists them."""
    out, listing = [], False
    for line in lines:
        if "Idempotence test failed" in line:
            out.append("idempotence: changed on the second run:")
            listing = True
        elif listing and IDEMPOTENCE_TASK.match(line):
            out.append("    " + line.strip())
        else:
            listing = False
    return out


def failed_tests(junit: Path) -> list[str]:
    """Each failed or erroring test of a pytest JUnit report, with the end of its traceback."""
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for problem in list(case.findall("failure")) + list(case.findall("error")):
            out.append(f"{problem.tag}: {case.get('classname')}::{case.get('name')} ({case.get('time')} s)")
            message = (problem.get("message") or "") + "\n" + (problem.text or "")
            out.extend("    " + text[:LINE_CHARS] for text in message.strip().splitlines()[-MESSAGE_LINES:])
    return out


def main(argv: list[str]) -> int:
    log = Path(argv[1])
    text = log_lines(log.read_text(errors="replace")) if log.exists() else []
    lines = failed_tasks(text) + not_idempotent(text)
    if len(argv) > 2 and Path(argv[2]).exists():
        lines += failed_tests(Path(argv[2]))
    print("\n".join(lines) if lines else "no failed task or test found; see the whole log")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
