"""scripts/molecule_failures.py: the failed tasks and tests of a `molecule test` run, from its log and the
verifier's JUnit report, as printed at the end of a CI log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "molecule_failures.py"

# As molecule prints it: coloured, each line of a step's output framed with "│ ".
LOG = """\
\x1b[2m│\x1b[0m TASK [opendove.mailserver.opensmtpd : Install smtpd.conf] ******
\x1b[2m│\x1b[0m \x1b[0;31mfatal: [mx12]: FAILED! => changed=false\x1b[0m
\x1b[2m│\x1b[0m   msg: failed to validate
\x1b[2m│\x1b[0m TASK [Probe] ****
\x1b[2m│\x1b[0m fatal: [mx13]: FAILED! => changed=false
\x1b[2m│\x1b[0m   msg: expected
\x1b[2m│\x1b[0m ...ignoring
\x1b[2m│\x1b[0m RUNNING HANDLER [opendove.mailserver.opensmtpd : Restart opensmtpd] ****
\x1b[2m│\x1b[0m fatal: [mx13]: FAILED! => changed=false
\x1b[2m│\x1b[0m   msg: Unable to start service opensmtpd
INFO     mx ➜ verify: Executing
\x1b[2m│\x1b[0m fatal: [mx12]: FAILED! => (a playbook a test expected to fail)
INFO     mx ➜ destroy: Executing
\x1b[2m│\x1b[0m TASK [Wait for instance(s) deletion to complete] ****
\x1b[2m│\x1b[0m FAILED - RETRYING: [localhost]: Wait for instance(s) deletion to complete (300 retries left).
"""

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" tests="2">
<testcase classname="tests.test_dkim" name="test_passes[mx12]" time="1.5"/>
<testcase classname="tests.test_dkim" name="test_signer_down[mx12]" time="61.2">
<failure message="AssertionError: no message reached the outside world after 30 s">Traceback line
E   AssertionError: no message reached the outside world after 30 s</failure></testcase>
</testsuite></testsuites>
"""


def summary(tmp_path: Path, log: str, junit: str | None) -> str:
    (tmp_path / "run.log").write_text(log)
    args = [sys.executable, str(SCRIPT), str(tmp_path / "run.log")]
    if junit is not None:
        (tmp_path / "verify.xml").write_text(junit)
        args.append(str(tmp_path / "verify.xml"))
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def test_failed_task_and_failed_test_are_named_with_their_messages(tmp_path):
    out = summary(tmp_path, LOG, JUNIT)
    assert "task 'opendove.mailserver.opensmtpd : Install smtpd.conf' failed on mx12:" in out
    assert "msg: failed to validate" in out
    assert "task 'opendove.mailserver.opensmtpd : Restart opensmtpd' failed on mx13:" in out
    assert "msg: Unable to start service opensmtpd" in out
    assert "failure: tests.test_dkim::test_signer_down[mx12] (61.2 s)" in out
    assert "E   AssertionError: no message reached the outside world after 30 s" in out


def test_ignored_failures_retries_the_verify_output_and_passing_tests_are_left_out(tmp_path):
    out = summary(tmp_path, LOG, JUNIT)
    assert "Probe" not in out and "RETRYING" not in out and "test_passes" not in out
    assert "expected to fail" not in out


def test_tasks_that_were_not_idempotent_are_listed(tmp_path):
    log = ("\x1b[31mERROR\x1b[0m Idempotence test failed because of the following tasks:\n"
           "* [mx13] => opendove.mailserver.dovecot : Install dovecot.conf\n"
           "dkimproxy ➜ idempotence: Executed: Failed\n")
    out = summary(tmp_path, log, None)
    assert out.splitlines() == ["idempotence: changed on the second run:",
                                "    * [mx13] => opendove.mailserver.dovecot : Install dovecot.conf"]


def test_nothing_found_says_so(tmp_path):
    assert summary(tmp_path, "PLAY RECAP\n", None).strip() == "no failed task or test found; see the whole log"
