"""The mda wrapper that runs local deliveries one at a time per recipient, and never turns a delivery cut short
into a bounce (smtpd bounces every exit status but 0, 75 and a signal)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles/opensmtpd/files/opendove-deliver-serialized"


def deliver(lock_dir, command: list[str], recipient: str = "bob@two.test") -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), str(lock_dir), *command], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, RECIPIENT=recipient), check=False)


@pytest.mark.parametrize("status, expected", [(0, 0), (69, 69), (75, 75), (1, 75), (65, 75), (137, 75)])
def test_only_success_and_a_refused_recipient_pass_every_other_status_tries_again(tmp_path, status, expected):
    assert deliver(tmp_path, ["sh", "-c", f"exit {status}"]).returncode == expected


def test_a_delivery_killed_by_a_signal_tries_again(tmp_path):
    assert deliver(tmp_path, ["sh", "-c", "kill -9 $$"]).returncode == 75


def test_a_lock_directory_that_cannot_be_used_tries_again(tmp_path):
    result = deliver(tmp_path / "missing", ["true"])
    assert result.returncode == 75 and "cannot use" in result.stderr


def test_the_lock_file_name_holds_no_character_of_the_address(tmp_path):
    assert deliver(tmp_path, ["true"], recipient="a/../b$c@two.test").returncode == 0
    assert [len(p.name) for p in tmp_path.iterdir()] == [32]


def overlaps(tmp_path, recipients: list[str]) -> bool:
    """Start a delivery for each recipient at once; each announces itself and waits (up to 10 s) until every one
    has: whether they all ran at the same time."""
    marks = tmp_path / "marks"
    marks.mkdir()
    command = [sys.executable, "-c", "import os, sys, time, uuid; d, n = sys.argv[1], int(sys.argv[2]); "
               "open(os.path.join(d, uuid.uuid4().hex), 'w').close(); end = time.time() + 10\n"
               "while len(os.listdir(d)) < n and time.time() < end: time.sleep(0.05)\n"
               "sys.exit(0 if len(os.listdir(d)) >= n else 3)", str(marks), str(len(recipients))]
    locks = tmp_path / "locks"
    locks.mkdir()
    processes = [subprocess.Popen([str(SCRIPT), str(locks), *command], env=dict(os.environ, RECIPIENT=r))
                 for r in recipients]
    # 75: smtpd's "try again later", which the wrapper makes of a delivery that gave up waiting (status 3).
    statuses = [p.wait(timeout=60) for p in processes]
    assert set(statuses) <= {0, 75}, statuses
    return statuses == [0] * len(recipients)


def test_deliveries_to_one_recipient_run_one_after_another(tmp_path):
    assert not overlaps(tmp_path, ["bob@two.test"] * 2)


def test_deliveries_to_different_recipients_run_side_by_side(tmp_path):
    assert overlaps(tmp_path, ["bob@two.test", "carol@two.test", "alice@one.test"])
