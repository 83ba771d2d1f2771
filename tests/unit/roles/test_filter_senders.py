"""The submission filter that holds the From and Sender headers to the user's own addresses, and that no input
stops: smtpd stops all mail when a filter exits."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import queue
import random
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCRIPT = Path(__file__).resolve().parents[3] / "roles/opensmtpd/files/opendove-filter-senders"
_loader = importlib.machinery.SourceFileLoader("filter_senders", str(SCRIPT))
_spec = importlib.util.spec_from_loader("filter_senders", _loader)
senders = importlib.util.module_from_spec(_spec)
_loader.exec_module(senders)

TABLE = "# managed\nalice@one.test alice@one.test, postmaster@one.test\nbob@two.test bob@two.test, info@two.test\n"
SESSION = b"8b13a1c50f1f3924"
REGISTRATION = [b"register|report|smtp-in|link-auth", b"register|report|smtp-in|tx-begin",
                b"register|report|smtp-in|link-disconnect", b"register|filter|smtp-in|data-line",
                b"register|filter|smtp-in|commit", b"register|ready"]
MB = 1 << 20


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "sender_addresses"
    path.write_text(TABLE)
    return path


def encoded(line: bytes | str) -> bytes:
    return line if isinstance(line, bytes) else line.encode()


def filter_line(phase: str, token: str, data: bytes | str = b"", version: str = "0.7") -> bytes:
    return b"filter|%s|1.3|smtp-in|%s|%s|%s|%s" % (version.encode(), phase.encode(), SESSION, token.encode(),
                                                   encoded(data))


def report_line(event: str, params: str = "", version: str = "0.7") -> bytes:
    return b"report|%s|1.1|smtp-in|%s|%s" % (version.encode(), event.encode(), SESSION) + encoded(params)


def session_lines(user: str | None, headers: list, version: str = "0.7", body: list | None = None,
                  auth: str = "pass") -> list[bytes]:
    lines = [b"config|smtpd-version|7.6.0", b"config|ready",
             report_line("link-connect", "|x|pass|172.30.31.1:5000|172.30.31.10:587", version)]
    if user:
        params = f"|{auth}|{user}" if version != "0.6" else f"|{user}|{auth}"
        lines.append(report_line("link-auth", params, version))
    lines.append(report_line("tx-begin", "|679b9605", version))
    data = ["Received: from client", "\tby mx (OpenSMTPD)"] + headers + [""] + (body or ["text | with a pipe"])
    lines += [filter_line("data-line", "tok1", line, version) for line in data + ["."]]
    lines.append(filter_line("commit", "tok2", "", version))
    return lines


def run(table, lines) -> list[bytes]:
    sender_filter = senders.SenderFilter(senders.SenderTable(str(table)))
    return [answer for line in lines for answer in sender_filter.handle(line)]


def run_rest(sender_filter, lines) -> list[bytes]:
    """The answers to a session's lines after config: another message in the same filter."""
    return [answer for line in lines[2:] for answer in sender_filter.handle(line)]


@pytest.mark.parametrize("headers", [
    ["From: Alice <alice@one.test>"],
    ["From: ALICE@one.test", "Sender: postmaster@one.test"],
    ["From: \"Post, Master\"", " <postmaster@one.test>"],
])
def test_own_addresses_pass_and_every_line_comes_back(table, headers):
    answers = run(table, session_lines("alice@one.test", headers))
    assert answers[:6] == REGISTRATION
    assert b"filter-dataline|%s|tok1|text | with a pipe" % SESSION in answers
    assert b"filter-dataline|%s|tok1|." % SESSION in answers
    assert answers[-1] == b"filter-result|%s|tok2|proceed" % SESSION


@pytest.mark.parametrize("user, headers, reason", [
    ("alice@one.test", ["From: bob@two.test"], "From address bob@two.test is not one you may send as"),
    ("alice@one.test", ["From: alice@one.test", "Sender: info@two.test"],
     "Sender address info@two.test is not one you may send as"),
    ("alice@one.test", ["From: alice@one.test, bob@two.test", "Sender: alice@one.test"],
     "From address bob@two.test"),
    ("alice@one.test", ["Subject: no from"], "exactly one From header"),
    ("alice@one.test", ["From: alice@one.test", "From: alice@one.test"], "exactly one From header"),
    ("alice@one.test", ["From: alice@one.test"] * 5, "exactly one From header"),
    ("alice@one.test", ["From: alice@one.test", "Sender: a@one.test", "Sender: b@one.test"], "at most one Sender"),
    ("alice@one.test", ["From: undisclosed"], "From header has no valid address"),
    ("nobody@one.test", ["From: nobody@one.test"], "From address nobody@one.test"),
    (None, ["From: alice@one.test"], "Authentication required"),
])
def test_foreign_or_missing_addresses_are_refused(table, user, headers, reason):
    answer = run(table, session_lines(user, headers))[-1]
    assert answer.startswith(b"filter-result|%s|tok2|reject|550 5.7.1 " % SESSION)
    assert reason.encode() in answer


def test_a_body_line_that_looks_like_a_header_is_not_one(table):
    lines = session_lines("alice@one.test", ["From: alice@one.test"])
    lines.insert(-3, filter_line("data-line", "tok1", "From: bob@two.test"))
    assert run(table, lines)[-1].endswith(b"|proceed")


def test_older_protocol_order_of_link_auth(table):
    assert run(table, session_lines("bob@two.test", ["From: info@two.test"], "0.6"))[-1].endswith(b"|proceed")


def test_table_changes_are_read_without_a_restart(table):
    sender_filter = senders.SenderFilter(senders.SenderTable(str(table)))
    lines = session_lines("alice@one.test", ["From: new@one.test"])
    assert [a for line in lines for a in sender_filter.handle(line)][-1].split(b"|")[3] == b"reject"
    table.write_text(TABLE + "alice@one.test alice@one.test, new@one.test\n")
    assert [a for line in lines[2:] for a in sender_filter.handle(line)][-1].endswith(b"|proceed")


def test_header_problem_is_a_pure_function_that_matches_bytes_not_lookalikes():
    allowed = {"alice@one.test", "kim@one.test"}
    assert senders.header_problem([b"From: Kim <KIM@one.test>"], allowed) is None
    # U+212A KELVIN SIGN lower-cases to k in Unicode; the table compares bytes, folding ASCII letters only.
    assert "is not one you may send as" in senders.header_problem(["From: \u212aim@one.test".encode()], allowed)
    assert senders.header_problem([b"From: alice@one.test", b"", b"From: bob@two.test"], allowed) is None


def test_only_the_from_and_sender_fields_are_kept_and_they_are_capped(table):
    sender_filter = senders.SenderFilter(senders.SenderTable(str(table)))
    headers = ["From: alice@one.test"] + [b"X-Filler: " + b"f" * 1000] * 2000 + [b"Sender: " + b"s" * MB]
    answers = [a for line in session_lines("alice@one.test", headers)[:-2] for a in sender_filter.handle(line)]
    assert len(answers) == 6 + len(headers) + 4
    header = sender_filter.sessions[SESSION].header
    assert header.lines == [b"From: alice@one.test"] and header.too_long == b"sender"
    assert sender_filter.handle(filter_line("commit", "tok2"))[0].endswith(
        b"|reject|550 5.7.1 The Sender header is longer than 65536 bytes")
    sender_filter.handle(report_line("link-disconnect"))
    assert not sender_filter.sessions


def test_an_error_while_handling_a_line_answers_it_and_the_next_message_goes_on(table):
    sender_filter = senders.SenderFilter(senders.SenderTable(str(table)))
    lines = session_lines("alice@one.test", ["From: alice@one.test"])
    failed = b"filter-result|%s|tok2|reject|451 4.3.0 The sender filter failed on this message; try again later"
    with mock.patch.object(senders.MessageHeader, "add", side_effect=RuntimeError("boom")):
        answers = [a for line in lines for a in sender_filter.handle(line)]
    check_answers(lines, answers)
    assert answers[-1] == failed % SESSION
    with mock.patch.object(sender_filter.table, "allowed", side_effect=KeyError("boom")):
        assert run_rest(sender_filter, lines)[-1] == failed % SESSION
    assert run_rest(sender_filter, lines)[-1].endswith(b"|proceed")


def test_sessions_that_never_disconnect_give_way_oldest_first(table, monkeypatch):
    monkeypatch.setattr(senders, "SESSIONS_MAX", 2)
    sender_filter = senders.SenderFilter(senders.SenderTable(str(table)))
    for session in (b"1", b"2", b"3"):
        sender_filter.handle(b"report|0.7|1.0|smtp-in|tx-begin|%s|1" % session)
    assert list(sender_filter.sessions) == [b"2", b"3"]
    assert sender_filter.handle(b"filter|0.7|1.0|smtp-in|commit|1|t|") == [
        b"filter-result|1|t|reject|451 4.3.0 The sender filter has no state for this session; try again later"]


# The program itself, under a strict locale -------------------------------------------------------------------

def strict_env(forced: bool) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONIOENCODING", "PYTHONUTF8")}
    env.update(LANG="en_US.UTF-8", LC_ALL="en_US.UTF-8")
    if forced:
        # Strict text stdin whatever locales the machine has: the filter must not depend on it either way.
        env["PYTHONIOENCODING"] = "utf-8:strict"
    return env


@pytest.fixture(scope="module", params=["en_US.UTF-8", "en_US.UTF-8+PYTHONIOENCODING=utf-8:strict"])
def strict(request) -> dict[str, str]:
    """An environment in which Python reads text stdin strictly, as under a real UTF-8 locale."""
    forced = "PYTHONIOENCODING" in request.param
    env = strict_env(forced)
    errors = subprocess.run([sys.executable, "-c", "import sys; print(sys.stdin.errors)"], env=env,
                            capture_output=True, text=True, check=True).stdout.strip()
    if errors != "strict":
        if forced:
            pytest.fail(f"PYTHONIOENCODING=utf-8:strict left stdin with errors={errors}")
        pytest.skip(f"en_US.UTF-8 is not generated here: Python reads stdin with {errors}, which would prove "
                    "nothing (the PYTHONIOENCODING=utf-8:strict run is strict on any machine)")
    return env


class FilterProcess:
    """The program, fed lines on stdin while a thread reads its answers (neither side can block the other)."""

    MARKER = b"filter|0.7|9|smtp-in|data-line|ffffffffffffffff|ffffffffffffffff|end of stream"
    MARKER_ECHO = b"filter-dataline|ffffffffffffffff|ffffffffffffffff|end of stream"

    def __init__(self, table, env: dict[str, str]):
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, str(SCRIPT), str(table)], env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.stderr)
        self.answers: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.answers.put(line.removesuffix(b"\n"))
        self.answers.put(None)

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="backslashreplace")

    def exchange(self, lines: list[bytes]) -> list[bytes]:
        """Send `lines` and a marker data-line; the answers before the marker's echo. The program has then read
        them all and is alive."""
        try:
            self.process.stdin.write(b"".join(line + b"\n" for line in lines + [self.MARKER]))
            self.process.stdin.flush()
        except BrokenPipeError:
            pytest.fail(f"the filter exited while reading its input:\n{self.log()[-3000:]}")
        answers = []
        while (answer := self.answers.get(timeout=60)) != self.MARKER_ECHO:
            assert answer is not None, f"the filter exited:\n{self.log()[-3000:]}"
            answers.append(answer)
        assert self.process.poll() is None
        return answers

    def close(self) -> int:
        """Close stdin (smtpd's end of input) and the exit code."""
        self.process.stdin.close()
        code = self.process.wait(timeout=30)
        assert self.answers.get(timeout=10) is None
        return code


@pytest.fixture
def start():
    """Starts FilterProcess, and kills at teardown a program a failed test left running."""
    started: list[FilterProcess] = []

    def start(table, env: dict[str, str]) -> FilterProcess:
        started.append(FilterProcess(table, env))
        return started[-1]

    yield start
    for program in started:
        if program.process.poll() is None:
            program.process.kill()
            program.process.wait()


def check_answers(lines: list[bytes], answers: list[bytes]) -> None:
    """Exactly one answer to each filter request, in order, with its session and token: a data-line's echo byte
    for byte, a filter-result proceed or a reject with a valid SMTP reply for any other phase; the registration
    for config|ready; nothing else."""
    expected: list[tuple[bytes, bytes]] = []  # (answer, or its prefix for a filter-result; request)
    for line in lines:
        fields = line.split(b"|", 7)
        if line == b"config|ready":
            expected += [(registration, line) for registration in REGISTRATION]
        elif fields[0] == b"filter" and len(fields) >= 7:
            if fields[4] == b"data-line":
                data = fields[7] if len(fields) > 7 else b""
                expected.append((b"filter-dataline|%s|%s|%s" % (fields[5], fields[6], data), line))
            else:
                expected.append((b"filter-result|%s|%s|" % (fields[5], fields[6]), line))
    assert len(answers) == len(expected)
    for index, (answer, (want, line)) in enumerate(zip(answers, expected)):
        if want.startswith(b"filter-result|"):
            rest = answer[len(want):] if answer.startswith(want) else None
            ok = rest == b"proceed" or rest is not None and re.fullmatch(
                rb"reject\|[45][0-9][0-9] [45]\.[0-9]{1,3}\.[0-9]{1,3} [\x20-\x7e]+", rest) is not None
        else:
            ok = answer == want
        assert ok, f"answer {index}: {answer[:200]!r} to {line[:200]!r}"


class Case(NamedTuple):
    lines: list[bytes]
    answer: str  # what the commit (token tok2) answer ends with or holds
    table: bool = True  # False: the table file is missing


def alice(headers: list, body: list | None = None, **kwargs) -> list[bytes]:
    """A message from alice@one.test as herself, with more `headers` and `body`."""
    return session_lines("alice@one.test", ["From: alice@one.test"] + headers, body=body, **kwargs)


def with_lines(lines: list[bytes], extra: list[bytes]) -> list[bytes]:
    """`extra` between the session's tx-begin and its first data-line."""
    at = next(index for index, line in enumerate(lines) if b"|tx-begin|" in line) + 1
    return lines[:at] + extra + lines[at:]


MALFORMED = [b"garbage", b"filter|0.7", b"report|", b"", b"filter|0.7|1.3|smtp-in|data-line|" + SESSION,
             b"filter|0.7|1.3|smtp-in|commit", b"\xff\xfe|\x00", b"|||||||", b"config|", b"register|ready"]
HOSTILE = {
    "latin-1 body": Case(alice([], body=[b"caf\xe9"]), "proceed"),
    "invalid UTF-8 in Subject": Case(alice([b"Subject: caf\xe9 \xc3\x28"]), "proceed"),
    "invalid UTF-8 in From": Case(session_lines("alice@one.test", [b"From: caf\xe9 <alice@one.test>"]),
                                  "550 5.7.1 The From header is not valid UTF-8"),
    "invalid UTF-8 in Sender": Case(alice([b"Sender: \xff@one.test"]),
                                    "550 5.7.1 The Sender header is not valid UTF-8"),
    "RFC 2047 display name": Case(session_lines("alice@one.test", ["From: =?utf-8?q?Caf=C3=A9?= <alice@one.test>"]),
                                  "proceed"),
    "RFC 2047 address": Case(session_lines("alice@one.test", ["From: =?utf-8?q?alice=40one.test?="]),
                             "550 5.7.1 The From header has no valid address"),
    "RFC 2047 local part": Case(session_lines("alice@one.test", ["From: <=?utf-8?q?alice?=@one.test>"]),
                                "550 5.7.1 From address =?utf-8?q?alice?=@one.test is not one you may send as"),
    "SMTPUTF8 address": Case(session_lines("alice@one.test", ["From: jos\u00e9@one.test"]),
                             "550 5.7.1 From address jos\\xc3\\xa9@one.test is not one you may send as"),
    "UTF-8 display name": Case(session_lines("alice@one.test", ["From: Jos\u00e9 Caf\u00e9 <alice@one.test>"]),
                               "proceed"),
    "1 MB Subject": Case(alice([b"Subject: " + b"x" * MB]), "proceed"),
    "1 MB From": Case(session_lines("alice@one.test", [b"From: " + b"a" * MB + b"@one.test"]),
                      "550 5.7.1 The From header is longer than 65536 bytes"),
    "From folded past 64 KiB": Case(
        session_lines("alice@one.test", ["From: alice@one.test,"] + [" alice@one.test,"] * 5000 + [" alice@one.test"]),
        "550 5.7.1 The From header is longer than 65536 bytes"),
    "1 MB body line": Case(alice([], body=[b"y" * MB, b"z" * (3 * MB + 17)]), "proceed"),
    "NUL and bare CR in the body": Case(alice([], body=[b"a\x00b", b"c\rd", b"\r", b"\x00", b"\r\x00\xff"]),
                                        "proceed"),
    "NUL in a header": Case(alice([b"Subject: a\x00b"]), "550 5.7.1 The message header has a bare CR or a NUL byte"),
    "bare CR hiding a From": Case(alice([b"Subject: hi\rFrom: bob@two.test"]),
                                  "550 5.7.1 The message header has a bare CR or a NUL byte"),
    "bare CR at the end of a 1 MB header": Case(alice([b"Subject: " + b"x" * MB + b"\rFrom: bob@two.test"]),
                                                "550 5.7.1 The message header has a bare CR or a NUL byte"),
    "control character in From": Case(session_lines("alice@one.test", [b"From: alice@one.test\x1b[0m"]),
                                      "550 5.7.1 The From header has a control character"),
    "deeply nested comments in From": Case(
        session_lines("alice@one.test", ["From: " + "(" * 5000 + ")" * 5000 + "alice@one.test"]),
        "550 5.7.1 The From header cannot be parsed"),
    "malformed lines": Case(with_lines(alice([]), MALFORMED + [b"filter||||||"]), "proceed"),
    "unknown report event": Case(with_lines(alice([]), [report_line("link-teleport", "|x|y"),
                                                        report_line("link-auth", "|maybe")]), "proceed"),
    "unknown and unregistered filter phases": Case(
        with_lines(alice([]), [filter_line("teleport", "tok9", "x"), filter_line("mail-from", "tok8", "bob@two.test"),
                               filter_line("data", "tok7")]), "proceed"),
    "protocol 0.9": Case(alice([], version="0.9"), "proceed"),
    "protocol 1.0, foreign From": Case(session_lines("alice@one.test", ["From: bob@two.test"], version="1.0"),
                                       "550 5.7.1 From address bob@two.test is not one you may send as"),
    "protocol 0.6": Case(session_lines("bob@two.test", ["From: info@two.test"], version="0.6"), "proceed"),
    "missing table file": Case(alice([]), "451 4.3.0 The senders table cannot be read; try again later", table=False),
    "commit after link-disconnect": Case(alice([]) + [report_line("link-disconnect"), filter_line("commit", "tok2")],
                                         "451 4.3.0 The sender filter has no state for this session; try again later"),
    "never authenticated": Case(session_lines(None, ["From: alice@one.test"]), "550 5.7.1 Authentication required"),
    "authentication failed": Case(alice([], auth="fail"), "550 5.7.1 Authentication required"),
}


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_under_a_strict_locale(strict, start, tmp_path, case):
    table = tmp_path / "sender_addresses"
    if case.table:
        table.write_text(TABLE)
    program = start(table, strict)
    answers = program.exchange(case.lines)
    check_answers(case.lines, answers)
    results = [answer.split(b"|", 3) for answer in answers if answer.startswith(b"filter-result|")]
    assert all(rest == b"proceed" for kind, session, token, rest in results if token != b"tok2")
    assert results[-1][2] == b"tok2"
    last = results[-1][3].decode()
    assert last == "proceed" if case.answer == "proceed" else last == f"reject|{case.answer}"
    assert program.close() == 0
    log = program.log()
    assert "Traceback" not in log and "error at line" not in log
    if last != "proceed":
        assert f"refused: {case.answer}" in log


def test_the_program_speaks_the_protocol_on_stdin_and_stdout(table, strict):
    lines = session_lines("alice@one.test", ["From: bob@two.test"])
    # The last line without its newline: smtpd gone mid-write.
    result = subprocess.run([sys.executable, str(SCRIPT), str(table)], input=b"\n".join(lines), env=strict,
                            capture_output=True, timeout=30, check=True)
    assert result.stdout.splitlines()[-1].split(b"|")[:4] == [b"filter-result", SESSION, b"tok2", b"reject"]
    assert b"refused: 550 5.7.1 From address bob@two.test" in result.stderr


def test_smtpd_gone_ends_the_program_quietly(table, strict):
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(table)], env=strict, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    try:
        process.stdin.write(b"".join(line + b"\n" for line in session_lines("alice@one.test", []) * 100))
        process.stdin.close()
    except BrokenPipeError:
        pass
    assert process.wait(timeout=30) == 0
    assert process.stderr.read() == b""


# Random protocol streams -------------------------------------------------------------------------------------

PIECES = [b"", b"\x00", b"\r", b"\xff", b"|", b" ", b"\t", b":", b".", b",", b"<", b">", b"(", b"\"", b"caf\xe9",
          "Jos\u00e9".encode(), b"From: ", b"Sender: ", b"Subject: ", b"alice@one.test", b"bob@two.test",
          b"=?utf-8?q?Caf=C3=A9?=", b"\xc3\x28"]
HEADERS = [b"From: alice@one.test", b"From: Alice <ALICE@one.test>", b"From: bob@two.test", b"Sender: info@two.test",
           b"Sender: postmaster@one.test", b"From: =?utf-8?q?Caf=C3=A9?= <alice@one.test>", b"From: (((alice@one.test",
           b"From: =?utf-8?q?alice=40one.test?=", "From: jos\u00e9@one.test".encode(), b"From: caf\xe9 <bob@two.test>",
           b" <info@two.test>", b"\t(a comment)", b"Subject: caf\xe9", b"Received: by mx"]
VERSIONS = [b"0.6", b"0.7", b"0.7", b"0.9", b"1.0"]
EVENTS = [b"tx-begin", b"link-disconnect", b"link-connect", b"tx-reset", b"link-teleport", b""]
PHASES = [b"data-line", b"commit", b"mail-from", b"connect", b"teleport", b""]


def payload(rng: random.Random) -> bytes:
    if rng.randint(0, 999) == 999:  # now and then a line longer than the program reads at once
        return rng.choice([b"From: ", b"Subject: ", b""]) + b"z" * rng.randint(200_000, 1_100_000) + \
            rng.choice([b"", b"\r", b"\x00"])
    return b"".join(rng.choice(PIECES) for piece in range(rng.randint(0, 6)))


def random_session(rng: random.Random, session: bytes, version: bytes) -> list[bytes]:
    """One session's lines in their order: an auth result or none, a message or two, a link-disconnect or none."""
    def report(event: bytes, params: bytes = b"") -> bytes:
        return b"report|%s|1.0|smtp-in|%s|%s%s" % (version, event, session, params)

    def request(phase: bytes, data: bytes) -> bytes:
        return b"filter|%s|1.0|smtp-in|%s|%s|%016x|%s" % (version, phase, session, rng.randint(0, 2**64 - 1), data)

    lines = []
    if rng.randint(0, 4):
        status = rng.choice([b"pass", b"pass", b"fail", b"error", b"maybe"])
        user = rng.choice([b"alice@one.test", b"bob@two.test", b"nobody", b"a|b", b""])
        lines.append(report(b"link-auth", b"|%s|%s" % ((user, status) if version == b"0.6" else (status, user))))
    for message in range(rng.randint(1, 2)):
        header = [rng.choice(HEADERS) if rng.randint(0, 3) else payload(rng) for field in range(rng.randint(0, 4))]
        body = [payload(rng) for body_line in range(rng.randint(0, 3))]
        lines.append(report(b"tx-begin", b"|1"))
        lines += [request(b"data-line", line) for line in header + [b""] + body + [b"."]] + [request(b"commit", b"")]
    if rng.randint(0, 1):
        lines.append(report(b"link-disconnect"))
    return lines


def noise(rng: random.Random, session: bytes) -> bytes:
    """A line out of any session's order: an unknown event or phase, a stray request, a broken line."""
    version, data = rng.choice(VERSIONS), payload(rng)
    token = b"%016x" % rng.randint(0, 2**64 - 1)
    line = rng.choice([b"report|%s|1.0|smtp-in|%s|%s|%s" % (version, rng.choice(EVENTS), session, data),
                       b"filter|%s|1.0|smtp-in|%s|%s|%s|%s" % (version, rng.choice(PHASES), session, token, data)])
    return rng.choice([line, line, line[:rng.randint(0, len(line))], data, b"", b"config|ready"])


def random_stream(rng: random.Random) -> list[bytes]:
    """A protocol stream of a few interleaved sessions, with hostile bytes in their data-lines, other protocol
    versions, and noise between them. `rng` is random.Random, or Hypothesis's stand-in for it (whose choices it
    can shrink)."""
    sessions = [b"%016x" % rng.randint(0, 2**64 - 1) for session_index in range(rng.randint(1, 3))]
    scripts = [random_session(rng, session, rng.choice(VERSIONS)) for session in sessions]
    lines = [b"config|ready"]
    while scripts:
        if rng.randint(0, 3) == 3:  # (Hypothesis's smallest choice, 0, must end the stream)
            lines.append(noise(rng, rng.choice(sessions)))
        else:
            script = rng.choice(scripts)
            lines.append(script.pop(0))
            if not script:
                scripts.remove(script)
    return lines


@pytest.fixture(scope="module")
def module_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "sender_addresses"
    path.write_text(TABLE)
    return path


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.randoms(use_true_random=False))
def test_random_streams_in_process(module_table, rng):
    lines = random_stream(rng)
    sender_filter = senders.SenderFilter(senders.SenderTable(str(module_table)))
    logged: list[str] = []
    with mock.patch.object(senders, "log", logged.append):
        answers = [answer for line in lines for answer in sender_filter.handle(line)]
    check_answers(lines, answers)
    assert not [line for line in logged if line.startswith("error at line")]


def test_random_streams_through_one_program(start, tmp_path):
    table = tmp_path / "sender_addresses"
    table.write_text(TABLE)
    rng = random.Random(20240601)
    program = start(table, strict_env(forced=True))
    for round_number in range(4):
        lines = [line for stream in range(500) for line in random_stream(rng)]
        check_answers(lines, program.exchange(lines))
    assert program.close() == 0
    assert "Traceback" not in program.log() and "error at line" not in program.log()
