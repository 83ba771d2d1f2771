"""Runs one of the collection's modules as `ansible localhost -m` does, against this checkout, and returns its
result for localhost with the whole JSON output (what a user would see, to look for secrets in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
ANSIBLE = Path(sys.executable).parent / "ansible"


def run_module(module: str, args: dict, check: bool = False, python: str = sys.executable) -> tuple[dict, str]:
    command = [str(ANSIBLE), "localhost", "-i", "localhost,", "-c", "local", "-m", f"opendove.mailserver.{module}",
               "-a", json.dumps(args), "-e", f"ansible_python_interpreter={python}"]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    result = subprocess.run(command + (["--check"] if check else []), capture_output=True, text=True, env=env,
                            cwd=ROOT, check=False, timeout=120)
    return json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"], result.stdout
