"""The submission filter that holds the From and Sender headers to the user's own addresses."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles/opensmtpd/files/opendove-filter-senders"
_loader = importlib.machinery.SourceFileLoader("filter_senders", str(SCRIPT))
_spec = importlib.util.spec_from_loader("filter_senders", _loader)
senders = importlib.util.module_from_spec(_spec)
_loader.exec_module(senders)

TABLE = "# managed\nalice@one.test alice@one.test, postmaster@one.test\nbob@two.test bob@two.test, info@two.test\n"
SESSION = "8b13a1c50f1f3924"


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "sender_addresses"
    path.write_text(TABLE)
    return path


def session_lines(user: str | None, headers: list[str], version: str = "0.7") -> list[str]:
    lines = ["config|smtpd-version|7.6.0", "config|ready",
             f"report|{version}|1.0|smtp-in|link-connect|{SESSION}|x|pass|172.30.31.1:5000|172.30.31.10:587"]
    if user:
        auth = f"pass|{user}" if version == "0.7" else f"{user}|pass"
        lines.append(f"report|{version}|1.1|smtp-in|link-auth|{SESSION}|{auth}")
    lines.append(f"report|{version}|1.2|smtp-in|tx-begin|{SESSION}|679b9605")
    body = ["Received: from client", "\tby mx (OpenSMTPD)"] + headers + ["", "text | with a pipe", "."]
    lines += [f"filter|{version}|1.3|smtp-in|data-line|{SESSION}|tok1|{line}" for line in body]
    lines.append(f"filter|{version}|1.4|smtp-in|commit|{SESSION}|tok2|")
    return lines


def run(table, lines) -> list[str]:
    sender_filter = senders.SenderFilter(senders.SenderTable(str(table)))
    return [answer for line in lines for answer in sender_filter.handle(line)]


@pytest.mark.parametrize("headers", [
    ["From: Alice <alice@one.test>"],
    ["From: ALICE@one.test", "Sender: postmaster@one.test"],
    ["From: \"Post, Master\"", " <postmaster@one.test>"],
])
def test_own_addresses_pass_and_every_line_comes_back(table, headers):
    answers = run(table, session_lines("alice@one.test", headers))
    assert answers[:6] == ["register|report|smtp-in|link-auth", "register|report|smtp-in|tx-begin",
                           "register|report|smtp-in|link-disconnect", "register|filter|smtp-in|data-line",
                           "register|filter|smtp-in|commit", "register|ready"]
    assert f"filter-dataline|{SESSION}|tok1|text | with a pipe" in answers
    assert f"filter-dataline|{SESSION}|tok1|." in answers
    assert answers[-1] == f"filter-result|{SESSION}|tok2|proceed"


@pytest.mark.parametrize("user, headers, reason", [
    ("alice@one.test", ["From: bob@two.test"], "From address bob@two.test is not one you may send as"),
    ("alice@one.test", ["From: alice@one.test", "Sender: info@two.test"],
     "Sender address info@two.test is not one you may send as"),
    ("alice@one.test", ["From: alice@one.test, bob@two.test", "Sender: alice@one.test"],
     "From address bob@two.test"),
    ("alice@one.test", ["Subject: no from"], "exactly one From header"),
    ("alice@one.test", ["From: alice@one.test", "From: alice@one.test"], "exactly one From header"),
    ("alice@one.test", ["From: alice@one.test", "Sender: a@one.test", "Sender: b@one.test"], "at most one Sender"),
    ("alice@one.test", ["From: undisclosed"], "From header has no valid address"),
    ("nobody@one.test", ["From: nobody@one.test"], "From address nobody@one.test"),
    (None, ["From: alice@one.test"], "Authentication required"),
])
def test_foreign_or_missing_addresses_are_refused(table, user, headers, reason):
    answer = run(table, session_lines(user, headers))[-1]
    assert answer.startswith(f"filter-result|{SESSION}|tok2|reject|550 5.7.1 ")
    assert reason in answer


def test_a_body_line_that_looks_like_a_header_is_not_one(table):
    lines = session_lines("alice@one.test", ["From: alice@one.test"])
    lines.insert(-3, f"filter|0.7|1.3|smtp-in|data-line|{SESSION}|tok1|From: bob@two.test")
    assert run(table, lines)[-1].endswith("|proceed")


def test_older_protocol_order_of_link_auth(table):
    assert run(table, session_lines("bob@two.test", ["From: info@two.test"], "0.6"))[-1].endswith("|proceed")


def test_table_changes_are_read_without_a_restart(table):
    sender_filter = senders.SenderFilter(senders.SenderTable(str(table)))
    lines = session_lines("alice@one.test", ["From: new@one.test"])
    assert [a for line in lines for a in sender_filter.handle(line)][-1].split("|")[3] == "reject"
    table.write_text(TABLE + "alice@one.test alice@one.test, new@one.test\n")
    assert [a for line in lines[2:] for a in sender_filter.handle(line)][-1].endswith("|proceed")


def test_the_program_speaks_the_protocol_on_stdin_and_stdout(table):
    lines = session_lines("alice@one.test", ["From: bob@two.test"])
    result = subprocess.run([sys.executable, str(SCRIPT), str(table)], input="\n".join(lines) + "\n",
                            capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.splitlines()[-1].split("|")[:4] == ["filter-result", SESSION, "tok2", "reject"]
    assert "refused: 550 5.7.1 From address bob@two.test" in result.stderr
