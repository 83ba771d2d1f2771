"""The wrapper that keeps filter-rspamd alive: smtpd stops all mail when a filter exits, and filter-rspamd exits
on a data-line longer than 64 KiB and (0.1.7) on a link-auth user name with a "|". With --require-signature it
also refuses authenticated mail that filter-rspamd gives back without a DKIM-Signature (Rspamd failing)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import test_filter_senders as senders_tests  # (pytest puts this folder on sys.path: it has no __init__.py)

SCRIPT = Path(__file__).resolve().parents[3] / "roles/opensmtpd/files/opendove-filter-guard"
_loader = importlib.machinery.SourceFileLoader("filter_guard", str(SCRIPT))
_spec = importlib.util.spec_from_loader("filter_guard", _loader)
guard = importlib.util.module_from_spec(_spec)
_loader.exec_module(guard)

SESSION = b"8b13a1c50f1f3924"
OTHER = b"0000000000000002"
MB = 1 << 20
REFUSED = b"reject|550 5.6.0 A line of the message is longer than 64000 bytes"
# What filter-rspamd registers (0.1.7 and 0.1.8, in Go's map order), and the fake filter below.
RSPAMD = [b"register|report|smtp-in|%s" % event for event in (
    b"tx-mail", b"tx-rcpt", b"tx-begin", b"link-disconnect", b"link-greeting", b"link-identify", b"link-auth",
    b"tx-reset", b"link-connect")] + [b"register|filter|smtp-in|data-line", b"register|filter|smtp-in|commit"]
FAKE = [b"register|report|smtp-in|%s" % event for event in (b"link-connect", b"link-auth", b"tx-begin",
                                                            b"link-disconnect")] + RSPAMD[-2:]


def filter_line(phase: str, token: str, data: bytes | str = b"", version: str = "0.7",
                session: bytes = SESSION) -> bytes:
    data = data if isinstance(data, bytes) else data.encode()
    return b"filter|%s|1.3|smtp-in|%s|%s|%s|%s" % (version.encode(), phase.encode(), session, token.encode(), data)


def report_line(event: str, params: str = "", version: str = "0.7", session: bytes = SESSION) -> bytes:
    return b"report|%s|1.1|smtp-in|%s|%s" % (version.encode(), event.encode(), session) + params.encode()


def ready(registration: list[bytes] = FAKE, max_line: int = 64000,
          require: bool = False) -> tuple[object, list[bytes]]:
    """A Guard (`require`: --require-signature) whose child registered `registration`, and what smtpd got of it."""
    ready_guard = guard.Guard(max_line, require)
    sent = [line for registration_line in registration + [b"register|ready"]
            for line in ready_guard.from_child(registration_line)]
    return ready_guard, sent


def child_answer(line: bytes) -> bytes:
    """What filter-rspamd (and the fake) answers a data-line or a commit the guard passed on."""
    fields = line.split(b"|", 7)
    if fields[4] == b"data-line":
        return b"filter-dataline|%s|%s|%s" % (fields[5], fields[6], fields[7])
    return b"filter-result|%s|%s|reject|421 server internal error" % (fields[5], fields[6])


def through(guard_under_test, lines: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """The lines the child gets, and smtpd's answers: the child's to what it got (as child_answer), and the
    guard's own."""
    to_child, to_smtpd = [], []
    for line in lines:
        forward, answers = guard_under_test.from_smtpd(line)
        to_child += forward
        to_smtpd += answers
        for sent in forward:
            if sent.startswith(b"filter|"):
                to_smtpd += guard_under_test.from_child(child_answer(sent))
    return to_child, to_smtpd


def message(token: str, lines: list[bytes | str], session: bytes = SESSION) -> list[bytes]:
    return [report_line("tx-begin", "|679b9605", session=session)] + [
        filter_line("data-line", "tok1", line, session=session) for line in lines + ["."]] + [
        filter_line("commit", token, session=session)]


# Registration ------------------------------------------------------------------------------------------------

GUARD_NEEDS = [b"register|report|smtp-in|tx-begin", b"register|report|smtp-in|tx-reset",
               b"register|report|smtp-in|link-disconnect", b"register|filter|smtp-in|commit"]


@pytest.mark.parametrize("child, smtpd", [
    (RSPAMD, RSPAMD),
    (FAKE, FAKE + [b"register|report|smtp-in|tx-reset"]),
    ([b"register|filter|smtp-in|data-line"], [b"register|filter|smtp-in|data-line"] + GUARD_NEEDS),
    ([b"register|report|smtp-in|*", b"register|filter|smtp-in|data-line"],
     [b"register|report|smtp-in|*", b"register|filter|smtp-in|data-line", b"register|filter|smtp-in|commit"]),
    (FAKE + FAKE[::-1], FAKE + [b"register|report|smtp-in|tx-reset"]),
    ([b"register|report|smtp-in|link-auth"], [b"register|report|smtp-in|link-auth"]),
    ([], []),
], ids=["filter-rspamd", "no tx-reset", "data-line only", "all reports", "duplicates", "no data-line", "nothing"])
def test_the_guard_adds_what_it_needs_once_before_ready(child, smtpd):
    assert ready(child)[1] == smtpd + [b"register|ready"]


def test_a_registration_after_ready_that_smtpd_has_is_recorded_but_not_repeated():
    guard_under_test = ready([b"register|filter|smtp-in|data-line"])[0]
    assert guard_under_test.from_child(b"register|filter|smtp-in|commit") == []
    assert guard_under_test.from_child(b"register|report|smtp-in|tx-reset") == []
    commit = filter_line("commit", "tok2")
    assert guard_under_test.from_smtpd(commit) == ([commit], [])
    assert guard_under_test.from_smtpd(report_line("tx-reset", "|1"))[0] == [report_line("tx-reset", "|1")]


# Long data-lines ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("registration, next_answer", [
    (RSPAMD, b"reject|421 server internal error"),
    (FAKE, b"reject|421 server internal error"),
    ([b"register|filter|smtp-in|data-line"], b"proceed"),  # (the guard answers the commit)
], ids=["filter-rspamd", "fake", "no commit"])
@pytest.mark.parametrize("size", [64001, 65500, MB])
def test_a_long_data_line_is_cut_and_the_message_refused_at_commit(registration, next_answer, size):
    guard_under_test = ready(registration)[0]
    lines = message("tok2", ["Subject: hi", "", b"x" * size, "y" * 64000])
    to_child, to_smtpd = through(guard_under_test, lines)
    data = [line.split(b"|", 7)[7] for line in to_child if b"|data-line|" in line]
    assert data == [b"Subject: hi", b"", b"x" * 64000, b"y" * 64000, b"."]
    assert to_smtpd[:-1] == [b"filter-dataline|%s|tok1|%s" % (SESSION, line) for line in data]
    assert to_smtpd[-1] == b"filter-result|%s|tok2|%s" % (SESSION, REFUSED)
    # The next message of the session goes on as the child says.
    to_child, to_smtpd = through(guard_under_test, [report_line("tx-reset", "|679b9605")] +
                                 message("tok3", ["Subject: hi", "", "body"]))
    assert (registration == RSPAMD) == (report_line("tx-reset", "|679b9605") in to_child)
    assert to_smtpd[-1] == b"filter-result|%s|tok3|%s" % (SESSION, next_answer)


@pytest.mark.parametrize("payload", [b"", b".", b"..", b"x" * 64000, b"|" * 64000, b"\xff\x00\r" * 1000])
def test_a_data_line_within_the_limit_passes_unchanged(payload):
    guard_under_test = ready(RSPAMD)[0]
    lines = message("tok2", [payload])
    to_child, to_smtpd = through(guard_under_test, lines)
    assert to_child == lines
    assert to_smtpd[-1] == b"filter-result|%s|tok2|reject|421 server internal error" % SESSION


def test_the_head_of_a_line_too_long_to_read_at_once_is_cut_whatever_its_size():
    guard_under_test = ready(RSPAMD)[0]
    head = filter_line("data-line", "tok1", b"x" * 100)
    assert guard_under_test.from_smtpd(head, whole=False) == ([head], [])
    assert SESSION in guard_under_test.marked


@pytest.mark.parametrize("event", ["tx-begin", "tx-reset", "link-disconnect"])
def test_the_mark_goes_with_the_message(event):
    guard_under_test = ready(RSPAMD)[0]
    through(guard_under_test, message("tok1", [b"x" * 65500])[:-1] + [report_line(event, "|1")])
    assert through(guard_under_test, [filter_line("commit", "tok2")])[1] == [
        b"filter-result|%s|tok2|reject|421 server internal error" % SESSION]


def test_only_the_marked_session_and_its_commit_token_are_refused():
    guard_under_test = ready(RSPAMD)[0]
    through(guard_under_test, message("tok2", [b"x" * 65500])[:-1] + message("tok9", ["ok"], OTHER)[:-1])
    assert guard_under_test.from_smtpd(filter_line("commit", "tok2")) == ([filter_line("commit", "tok2")], [])
    assert guard_under_test.from_child(b"filter-result|%s|tok9|proceed" % SESSION) == [
        b"filter-result|%s|tok9|proceed" % SESSION]
    assert guard_under_test.from_child(b"filter-result|%s|tok2|proceed" % OTHER) == [
        b"filter-result|%s|tok2|proceed" % OTHER]
    assert guard_under_test.from_child(b"filter-result|%s|tok2|proceed" % SESSION) == [
        b"filter-result|%s|tok2|%s" % (SESSION, REFUSED)]
    # Refused once: a repeated answer (smtpd would not ask twice) passes.
    assert guard_under_test.from_child(b"filter-result|%s|tok2|proceed" % SESSION) == [
        b"filter-result|%s|tok2|proceed" % SESSION]


def test_a_session_gone_before_the_child_answers_its_commit_gets_the_answer_unchanged():
    guard_under_test = ready(RSPAMD)[0]
    through(guard_under_test, message("tok2", [b"x" * 65500])[:-1])
    guard_under_test.from_smtpd(filter_line("commit", "tok2"))
    guard_under_test.from_smtpd(report_line("link-disconnect"))
    answer = b"filter-result|%s|tok2|proceed" % SESSION
    assert guard_under_test.from_child(answer) == [answer]  # (smtpd drops an answer for a session it closed)
    assert not guard_under_test.marked and not guard_under_test.refusing


def test_marks_of_sessions_that_never_end_give_way_oldest_first(monkeypatch):
    monkeypatch.setattr(guard, "SESSIONS_MAX", 2)
    guard_under_test = ready(RSPAMD)[0]
    for session in (b"1", b"2", b"3"):
        guard_under_test.from_smtpd(filter_line("data-line", "t", b"x" * 65500, session=session))
    assert list(guard_under_test.marked) == [b"2", b"3"]


# link-auth ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version, params, child_gets", [
    ("0.7", "|fail|evil|user", "|fail|evil_user"),
    ("0.7", "|pass|alice@one.test", "|pass|alice@one.test"),
    ("0.7", "|pass|a|b|c", "|pass|a_b_c"),
    ("0.7", "|fail|", "|fail|"),
    ("0.7", "|fail", "|fail|"),
    ("0.7", "", "||"),
    ("0.6", "|evil|user|fail", "|evil_user|fail"),
    ("0.6", "|alice@one.test|pass", "|alice@one.test|pass"),
    ("0.6", "||||pass", "|__|pass"),
    ("0.6", "|pass", "||pass"),
    ("0.5", "|a|b|pass", "|a_b|pass"),
    ("1.0", "|pass|a|b", "|pass|a_b"),
    ("x.y", "|pass|a|b", "|pass|a_b"),
])
def test_link_auth_reaches_the_child_with_two_parameters(version, params, child_gets):
    guard_under_test = ready(RSPAMD)[0]
    assert guard_under_test.from_smtpd(report_line("link-auth", params, version)) == (
        [report_line("link-auth", child_gets, version)], [])


# DKIM signatures (--require-signature) -----------------------------------------------------------------------

UNSIGNED_REFUSAL = b"reject|451 4.7.0 The message could not be DKIM-signed; try again later"
LINK_AUTH = b"register|report|smtp-in|link-auth"
PASS = report_line("link-auth", "|pass|alice@one.test")
SIGNATURE = b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=one.test; s=mx-rsa;"
# A message as filter-rspamd gives it back: Rspamd's signature (folded) before the submitted header; or unsigned.
SIGNED = [SIGNATURE, b"\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;", b"\tb=bm90IGEgc2lnbmF0dXJl",
          "From: alice@one.test", "Subject: secret", "", "hi"]
UNSIGNED = SIGNED[3:]
NO_LINK_AUTH = [line for line in FAKE if line != LINK_AUTH]


def submit(guard_under_test, reports: list[bytes], child_gives: list[bytes | str], child_says: bytes,
           session: bytes = SESSION, token: str = "tok2", sent: tuple = tuple(UNSIGNED)) -> bytes:
    """The answer smtpd gets to the commit of a message (`sent`, after `reports`) of `session` that the child
    gives back as `child_gives` and answers with `child_says`. As smtpd: the commit once the message is back."""
    lines = reports + message(token, list(sent), session)
    for line in lines[:-1]:
        assert guard_under_test.from_smtpd(line)[1] == []
    for data in child_gives + ["."]:
        dataline = b"filter-dataline|%s|tok1|%s" % (session, data if isinstance(data, bytes) else data.encode())
        assert guard_under_test.from_child(dataline) == [dataline]
    assert guard_under_test.from_smtpd(lines[-1]) == ([lines[-1]], [])
    (result,) = guard_under_test.from_child(b"filter-result|%s|%s|%s" % (session, token.encode(), child_says))
    assert result.startswith(b"filter-result|%s|%s|" % (session, token.encode()))
    return result.split(b"|", 3)[3]


@pytest.mark.parametrize("child, smtpd", [
    (RSPAMD, RSPAMD),
    (FAKE, FAKE + [b"register|report|smtp-in|tx-reset"]),
    (NO_LINK_AUTH, NO_LINK_AUTH + [b"register|report|smtp-in|tx-reset", LINK_AUTH]),
    ([b"register|filter|smtp-in|data-line"], [b"register|filter|smtp-in|data-line"] + GUARD_NEEDS[:3] + [
        LINK_AUTH, b"register|filter|smtp-in|commit"]),
    ([b"register|report|smtp-in|*"], [b"register|report|smtp-in|*", b"register|filter|smtp-in|commit"]),
    ([], GUARD_NEEDS[:3] + [LINK_AUTH, b"register|filter|smtp-in|commit"]),
], ids=["filter-rspamd", "no tx-reset", "no link-auth", "data-line only", "all reports", "nothing"])
def test_requiring_a_signature_the_guard_adds_link_auth_to_what_it_needs(child, smtpd):
    assert ready(child, require=True)[1] == smtpd + [b"register|ready"]


@pytest.mark.parametrize("reports, child_gives, child_says, smtpd_gets", [
    ([PASS], SIGNED, b"proceed", b"proceed"),
    ([PASS], UNSIGNED, b"proceed", UNSIGNED_REFUSAL),
    ([report_line("link-auth", "|alice@one.test|pass", "0.6")], SIGNED, b"proceed", b"proceed"),
    ([report_line("link-auth", "|alice@one.test|pass", "0.6")], UNSIGNED, b"proceed", UNSIGNED_REFUSAL),
    ([report_line("link-auth", "|pass|a|b")], UNSIGNED, b"proceed", UNSIGNED_REFUSAL),
    ([PASS], ["DKIM-Signature:", "\tv=1; d=one.test; s=mx;", " b=c2ln"] + UNSIGNED, b"proceed", b"proceed"),
    ([PASS], ["From: alice@one.test", "dkim-signature : v=1;", "", "hi"], b"proceed", b"proceed"),
    ([PASS], ["From: alice@one.test", "Subject: hi", SIGNATURE], b"proceed", b"proceed"),
    ([PASS], ["From: alice@one.test", "", SIGNATURE], b"proceed", UNSIGNED_REFUSAL),
    ([PASS], ["From: alice@one.test", "", "", SIGNATURE], b"proceed", UNSIGNED_REFUSAL),
    ([PASS], ["Subject: hi", b" " + SIGNATURE, b"\t" + SIGNATURE, "", "hi"], b"proceed", UNSIGNED_REFUSAL),
    ([PASS], ["X-DKIM-Signature: v=1;", "DKIM-Signatures: v=1;", "DKIM-Signature v=1;", "", "hi"], b"proceed",
     UNSIGNED_REFUSAL),
    ([PASS], [], b"proceed", UNSIGNED_REFUSAL),
    ([PASS], UNSIGNED, b"reject|421 server internal error", b"reject|421 server internal error"),
    ([PASS], UNSIGNED, b"reject|550 5.7.1 Spam message rejected", b"reject|550 5.7.1 Spam message rejected"),
    ([PASS], UNSIGNED, b"disconnect|421 4.7.0 bye", b"disconnect|421 4.7.0 bye"),
    ([], UNSIGNED, b"proceed", b"proceed"),
    ([report_line("link-auth", "|fail|alice@one.test")], UNSIGNED, b"proceed", b"proceed"),
    ([report_line("link-auth", "|alice@one.test|fail", "0.6")], UNSIGNED, b"proceed", b"proceed"),
    ([report_line("link-auth", "|error|alice@one.test")], UNSIGNED, b"proceed", b"proceed"),
    ([PASS, report_line("link-auth", "|fail|alice@one.test")], UNSIGNED, b"proceed", UNSIGNED_REFUSAL),
    ([PASS, report_line("link-disconnect"), report_line("link-connect", "|c|pass|1.2.3.4:5|5.6.7.8:25")],
     UNSIGNED, b"proceed", b"proceed"),
], ids=["signed", "unsigned", "0.6 signed", "0.6 unsigned", "user with |", "folded signature",
        "lower case, blank before colon", "no body", "signature in the body", "signature in the body later",
        "signature in continuation lines", "other names", "nothing given back", "child tempfail",
        "child reject", "child disconnect", "no auth", "auth failed", "0.6 auth failed", "auth error",
        "auth passed before", "session id reused"])
@pytest.mark.parametrize("require", [True, False], ids=["required", "off"])
def test_the_commit_of_an_authenticated_message_given_back_unsigned_is_refused(
        reports, child_gives, child_says, smtpd_gets, require):
    guard_under_test = ready(RSPAMD, require=require)[0]
    assert submit(guard_under_test, reports, child_gives, child_says) == (smtpd_gets if require else child_says)


@pytest.mark.parametrize("child_says", [b"proceed", b"reject|421 server internal error"])
def test_a_cut_line_refusal_comes_before_the_unsigned_one(child_says):
    guard_under_test = ready(RSPAMD, require=True)[0]
    sent = ("From: alice@one.test", "", b"x" * 65500)
    assert submit(guard_under_test, [PASS], UNSIGNED, child_says, sent=sent) == REFUSED


def test_each_message_of_a_session_is_judged_by_itself():
    guard_under_test = ready(RSPAMD, require=True)[0]
    assert submit(guard_under_test, [PASS], UNSIGNED, b"proceed", token="tok2") == UNSIGNED_REFUSAL
    assert submit(guard_under_test, [report_line("tx-reset", "|1")], SIGNED, b"proceed", token="tok3") == b"proceed"
    assert submit(guard_under_test, [report_line("tx-reset", "|2")], UNSIGNED, b"proceed",
                  token="tok4") == UNSIGNED_REFUSAL
    assert submit(guard_under_test, [], SIGNED, b"proceed", token="tok5") == b"proceed"  # (tx-begin alone)
    # Another session, not authenticated, in between.
    assert submit(guard_under_test, [], UNSIGNED, b"proceed", OTHER, "tok6") == b"proceed"
    assert submit(guard_under_test, [], UNSIGNED, b"proceed", token="tok7") == UNSIGNED_REFUSAL


@pytest.mark.parametrize("event", ["tx-begin", "tx-reset", "link-disconnect"])
def test_the_signature_seen_goes_with_the_message(event):
    guard_under_test = ready(RSPAMD, require=True)[0]
    through(guard_under_test, [PASS, report_line("tx-begin", "|1")])
    guard_under_test.from_child(b"filter-dataline|%s|tok1|%s" % (SESSION, SIGNATURE))
    assert guard_under_test.signed == {SESSION: True}
    guard_under_test.from_smtpd(report_line(event, "|1"))
    assert not guard_under_test.signed
    assert (SESSION in guard_under_test.authenticated) == (event != "link-disconnect")


def test_link_auth_reaches_only_a_child_that_registered_it_but_the_guard_reads_it():
    guard_under_test = ready(NO_LINK_AUTH, require=True)[0]
    assert guard_under_test.from_smtpd(PASS) == ([], [])
    assert submit(guard_under_test, [], UNSIGNED, b"proceed") == UNSIGNED_REFUSAL
    guard_under_test = ready(FAKE, require=True)[0]
    assert guard_under_test.from_smtpd(report_line("link-auth", "|pass|a|b")) == (
        [report_line("link-auth", "|pass|a_b")], [])


@pytest.mark.parametrize("child_gives, smtpd_gets", [(SIGNED, b"proceed"), (UNSIGNED, UNSIGNED_REFUSAL)])
def test_a_commit_the_child_did_not_register_is_refused_by_the_guard_if_unsigned(child_gives, smtpd_gets):
    guard_under_test = ready([b"register|filter|smtp-in|data-line"], require=True)[0]
    lines = [PASS] + message("tok2", UNSIGNED)
    for line in lines[:-1]:
        guard_under_test.from_smtpd(line)
    for data in child_gives + ["."]:
        guard_under_test.from_child(b"filter-dataline|%s|tok1|%s" % (SESSION, data if isinstance(data, bytes)
                                                                     else data.encode()))
    assert guard_under_test.from_smtpd(lines[-1]) == ([], [b"filter-result|%s|tok2|%s" % (SESSION, smtpd_gets)])


def test_the_unsigned_refusal_is_logged_with_the_session_but_nothing_of_the_message():
    guard_under_test = ready(RSPAMD, require=True)[0]
    logged: list[str] = []
    with mock.patch.object(guard, "log", logged.append):
        submit(guard_under_test, [PASS], UNSIGNED, b"proceed")
        submit(guard_under_test, [], SIGNED, b"proceed", token="tok3")
        submit(guard_under_test, [], UNSIGNED, b"reject|421 server internal error", token="tok4")
    assert len(logged) == 1 and logged[0].startswith(
        f"session {SESSION.decode()}: refused: {UNSIGNED_REFUSAL[7:].decode()} (")
    assert logged[0].endswith("(the filter answered: proceed)")
    assert "alice" not in logged[0] and "secret" not in logged[0]


def test_authenticated_sessions_and_their_signatures_give_way_oldest_first(monkeypatch):
    monkeypatch.setattr(guard, "SESSIONS_MAX", 2)
    guard_under_test = ready(RSPAMD, require=True)[0]
    for session in (b"1", b"2", b"3"):
        guard_under_test.from_smtpd(report_line("link-auth", "|pass|u", session=session))
        guard_under_test.from_child(b"filter-dataline|%s|t|%s" % (session, SIGNATURE))
        guard_under_test.from_smtpd(filter_line("commit", "t", session=session))
    assert list(guard_under_test.authenticated) == [b"2", b"3"]
    assert list(guard_under_test.refusing) == []  # (all signed)
    assert not guard_under_test.signed  # (each commit ends its message)
    for session in (b"1", b"2", b"3"):
        guard_under_test.from_child(b"filter-dataline|%s|t|%s" % (session, SIGNATURE))
    assert list(guard_under_test.signed) == [b"2", b"3"]


# Everything else ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    b"config|smtpd-version|7.6.0", b"config|protocol|0.7", b"config|ready", b"", b"garbage", b"\xff\xfe|\x00",
    b"report|", b"report|0.7|1.1|smtp-in", b"filter|0.7", b"|||||||", filter_line("mail-from", "t", "a@b.test"),
    filter_line("data-line", "t", b"x" * 70000).replace(b"smtp-in", b"smtp-out"),
    b"filter|0.7|1.3|smtp-in|data-line|%s|tok1" % SESSION, b"filter|0.7|1.3|smtp-in|commit|%s" % SESSION,
    report_line("link-connect", "|rdns|pass|1.2.3.4:5|5.6.7.8:25"), report_line("tx-mail", "|1|ok|a|b@c"),
])
def test_other_lines_from_smtpd_pass_unchanged(line):
    assert ready(RSPAMD)[0].from_smtpd(line) == ([line], [])


@pytest.mark.parametrize("line", [
    report_line("tx-reset", "|1"), report_line("link-greeting", "|mx.test"), report_line("protocol-client", "|x"),
    b"report|0.7|1.1|smtp-out|tx-begin|%s|1" % SESSION])
def test_reports_the_child_did_not_register_do_not_reach_it(line):
    assert ready(FAKE)[0].from_smtpd(line) == ([], [])


def test_before_the_child_is_ready_its_registrations_are_not_known_and_reports_pass():
    guard_under_test = guard.Guard(64000)
    guard_under_test.from_child(b"register|report|smtp-in|link-auth")
    assert guard_under_test.from_smtpd(report_line("tx-reset", "|1")) == ([report_line("tx-reset", "|1")], [])
    guard_under_test.from_child(b"register|ready")
    assert guard_under_test.from_smtpd(report_line("tx-reset", "|1")) == ([], [])


@pytest.mark.parametrize("line", [
    b"filter-dataline|%s|tok1|x" % SESSION, b"filter-result|%s|tok2|proceed" % SESSION,
    b"filter-result|%s|tok2|reject|550 no" % SESSION, b"report|0.7|1.0|smtp-in|x|y", b"", b"garbage",
    b"register|nonsense", b"register|ready", b"filter-result|", b"\xff" * 100_000,
])
def test_other_lines_from_the_child_pass_unchanged(line):
    assert ready(RSPAMD)[0].from_child(line) == [line]


def test_a_commit_the_child_did_not_register_is_answered_by_the_guard():
    guard_under_test = ready([b"register|filter|smtp-in|data-line"])[0]
    assert guard_under_test.from_smtpd(filter_line("commit", "tok2")) == (
        [], [b"filter-result|%s|tok2|proceed" % SESSION])
    guard_under_test.from_smtpd(filter_line("data-line", "tok1", b"x" * 65500))
    assert guard_under_test.from_smtpd(filter_line("commit", "tok3")) == (
        [], [b"filter-result|%s|tok3|%s" % (SESSION, REFUSED)])


def test_an_error_in_the_guard_passes_the_line_unchanged_and_is_logged():
    guard_under_test = ready(RSPAMD)[0]
    logged: list[str] = []
    line = report_line("link-auth", "|fail|evil|user")
    with mock.patch.object(guard, "link_auth", side_effect=RuntimeError("boom")), \
            mock.patch.object(guard, "log", logged.append):
        assert guard_under_test.from_smtpd(line) == ([line], [])
    assert logged and logged[0].startswith("error at line") and "boom" in logged[0]


FRAGMENTS = [b"report", b"filter", b"0.6", b"0.7", b"1.0", b"1.1", b"smtp-in", b"smtp-out", b"link-auth",
             b"data-line", b"commit", b"tx-begin", b"tx-reset", b"link-disconnect", b"link-connect", SESSION, OTHER,
             b"tok", b"", b"evil", b"pass", b"fail", b".", b"\xff", b"x" * 150]


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.lists(st.sampled_from(FRAGMENTS), max_size=10).map(b"|".join), max_size=40),
       st.booleans(), st.booleans())
def test_random_streams_never_give_the_child_a_line_that_stops_it(lines, commit_registered, require):
    registration = FAKE if commit_registered else FAKE[:-1]
    guard_under_test = ready(registration, max_line=100, require=require)[0]
    logged: list[str] = []
    cut: set[bytes] = set()  # sessions whose message holds a cut line: the model of the guard's marks
    authenticated: set[bytes] = set()  # (require) sessions whose link-auth said pass: the child gives nothing back
    with mock.patch.object(guard, "log", logged.append):
        for line in lines:
            fields = line.split(b"|", 7)
            request = fields[0] == b"filter" and len(fields) >= 7 and fields[3] == b"smtp-in"
            to_child, to_smtpd = guard_under_test.from_smtpd(line)
            for sent in to_child:
                sent_fields = sent.split(b"|")
                if sent_fields[0] == b"report" and len(sent_fields) >= 6 and sent_fields[3] == b"smtp-in":
                    assert b"register|report|smtp-in|%s" % sent_fields[4] in registration
                    assert sent_fields[4] != b"link-auth" or len(sent_fields) == 8
                if sent_fields[0] == b"filter" and sent_fields[3:5] == [b"smtp-in", b"data-line"]:
                    assert len(sent.split(b"|", 7)[7:8][0] if len(sent_fields) > 7 else b"") <= 100
            if request and fields[4] == b"commit" and to_child:
                to_smtpd += guard_under_test.from_child(b"filter-result|%s|%s|proceed" % tuple(fields[5:7]))
            if fields[0] == b"report" and len(fields) >= 6 and fields[3] == b"smtp-in" and \
                    fields[4] in (b"tx-begin", b"tx-reset", b"link-disconnect"):
                cut.discard(fields[5])
                if fields[4] == b"link-disconnect":
                    authenticated.discard(fields[5])
            if require and fields[0] == b"report" and len(fields) >= 6 and fields[3:5] == [b"smtp-in", b"link-auth"]:
                params = line.split(b"|", 6)[6] if len(fields) > 6 else b""
                if (params.rpartition(b"|")[2] if fields[1] == b"0.6" else params.partition(b"|")[0]) == b"pass":
                    authenticated.add(fields[5])
            if request and fields[4] == b"data-line" and len(fields) == 8 and len(fields[7]) > 100:
                cut.add(fields[5])
            if request and fields[4] == b"commit":
                assert to_smtpd == [b"filter-result|%s|%s|%s" % (
                    fields[5], fields[6], b"reject|550 5.6.0 A line of the message is longer than 100 bytes"
                    if fields[5] in cut else UNSIGNED_REFUSAL if fields[5] in authenticated else b"proceed")]
                cut.discard(fields[5])
            else:
                assert to_smtpd == []
    assert not [entry for entry in logged if entry.startswith("error at line")]


@pytest.mark.parametrize("args, max_line, require, command", [
    (["--", "/bin/filter"], 64000, False, ["/bin/filter"]),
    (["--max-line", "1000", "--", "/bin/filter", "-url", "x"], 1000, False, ["/bin/filter", "-url", "x"]),
    (["--max-line=2000", "--", "f", "--", "g"], 2000, False, ["f", "--", "g"]),
    (["--require-signature", "--", "f"], 64000, True, ["f"]),
    (["--max-line", "1000", "--require-signature", "--", "f", "--require-signature"], 1000, True,
     ["f", "--require-signature"]),
    (["--require-signature", "--max-line=2000", "--", "f"], 2000, True, ["f"]),
])
def test_the_command_line(args, max_line, require, command):
    assert guard.parse_args(args) == (max_line, require, command)


@pytest.mark.parametrize("args", [[], ["/bin/filter"], ["--"], ["--max-line", "999", "--", "f"],
                                  ["--max-line", "x", "--", "f"], ["--max-line", "6\u00b2", "--", "f"],
                                  ["--max-line", "--", "f"], ["-x", "--", "f"], ["--require-signature", "--"],
                                  ["--require-signature", "--require-signature", "--", "f"],
                                  ["--max-line", "1000", "--max-line=2000", "--", "f"],
                                  ["--require-signature=yes", "--", "f"], ["--max-line", "--require-signature",
                                                                           "--", "f"]])
def test_a_wrong_command_line_exits_with_the_usage(args):
    with pytest.raises(SystemExit, match="usage: opendove-filter-guard"):
        guard.parse_args(args)


AUTH_PREFIX = report_line("link-auth", "|fail|")
LONG_AUTH = report_line("link-auth", "|fail|" + "u|" * 3000)


@pytest.mark.parametrize("lines, child_gets", [
    ([report_line("link-connect", "|" + "r" * 5000 + "|pass|1.2.3.4:5|5.6.7.8:25")],
     [report_line("link-connect", "|" + "r" * 5000 + "|pass|1.2.3.4:5|5.6.7.8:25")]),
    ([filter_line("data-line", "t", b"x" * 5000), filter_line("data-line", "t", "after")],
     [filter_line("data-line", "t", b"x" * 1000), filter_line("data-line", "t", "after")]),
    ([LONG_AUTH, report_line("link-auth", "|pass|a")],  # (the head of the line, its user name's "|" as "_")
     [LONG_AUTH[:len(AUTH_PREFIX)] + LONG_AUTH[len(AUTH_PREFIX):1081].replace(b"|", b"_"),
      report_line("link-auth", "|pass|a")]),
    ([report_line("tx-reset", "|" + "1" * 5000), report_line("tx-begin", "|1")], [report_line("tx-begin", "|1")]),
    ([b"z" * 3000, b"last line without its newline"], [b"z" * 3000, b"last line without its newline"]),
], ids=["long line passed on in pieces", "long data-line cut", "long link-auth", "long unregistered report",
        "garbage"])
def test_lines_longer_than_the_read_bound(lines, child_gets):
    """A line longer than the guard reads at once (here 1000 + 81 bytes) is handled by its head."""
    guard_under_test = ready(FAKE, max_line=1000)[0]
    child, smtpd = io.BytesIO(), io.BytesIO()
    source = io.BytesIO(b"\n".join(lines))
    guard.relay(source, 1081, guard_under_test.from_smtpd, guard.Output(child, None), guard.Output(smtpd, None))
    assert child.getvalue().splitlines() == child_gets and smtpd.getvalue() == b""


# The program, with a child filter that exits the way filter-rspamd does ------------------------------------

FAKE_FILTER = r'''
"""A stand-in for filter-rspamd: what it registers, and where it exits. Modes after the pid file: "sign", each
message comes back with a DKIM-Signature (as when Rspamd signs it), else without (as when Rspamd fails);
"no-link-auth", link-auth is not registered."""
import os
import sys

MODES = sys.argv[2:]
REPORTS = [b"link-connect", b"link-auth", b"tx-begin", b"link-disconnect"]
if "no-link-auth" in MODES:
    REPORTS.remove(b"link-auth")
FILTERS = [b"data-line", b"commit"]
begun = set()  # sessions whose message the filter has begun to give back


def say(line):
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.buffer.flush()


def stop(code, why):
    sys.stderr.write(f"fake-filter: {why}\n")
    sys.stderr.flush()
    os._exit(code)


with open(sys.argv[1], "w") as pid:
    pid.write(str(os.getpid()))
for line in sys.stdin.buffer:
    if len(line) > 65536:  # Go's bufio.Scanner
        stop(0, "no more lines to scan. exiting...")
    line = line.removesuffix(b"\n")
    fields = line.split(b"|")
    if line == b"config|ready":
        for line in [b"register|report|smtp-in|" + e for e in REPORTS] + [b"register|filter|smtp-in|" + p
                                                                      for p in FILTERS] + [b"register|ready"]:
            say(line)
    elif fields[0] == b"config":
        pass
    elif fields[0] == b"report" and len(fields) >= 6 and fields[4] in REPORTS:
        if fields[4] == b"link-auth" and len(fields) != 8:
            stop(1, "invalid input, shouldn't happen")
        if fields[4] == b"tx-begin":
            begun.discard(fields[5])
    elif fields[0] == b"filter" and len(fields) >= 8 and fields[4] in FILTERS:
        data = line.split(b"|", 7)[7]
        if data == b"EXIT 3":
            stop(3, "asked to exit")
        if data == b"KILL":
            os.kill(os.getpid(), 9)
        if fields[4] == b"data-line":
            if "sign" in MODES and fields[5] not in begun:
                say(b"filter-dataline|%s|%s|DKIM-Signature: v=1; a=rsa-sha256; d=one.test; s=mx;" % tuple(fields[5:7]))
                say(b"filter-dataline|%s|%s|\tb=bm90IGEgc2lnbmF0dXJl" % tuple(fields[5:7]))
            begun.add(fields[5])
            say(b"filter-dataline|%s|%s|%s" % (fields[5], fields[6], data))
        else:
            say(b"filter-result|%s|%s|proceed" % (fields[5], fields[6]))
    else:
        stop(1, f"invalid stream: {line[:80]!r}")
'''

CONFIG = [b"config|smtpd-version|7.4.0", b"config|smtp-session-timeout|300", b"config|subsystem|smtp-in",
          b"config|admd|mx.test", b"config|ready"]
CONNECT = [report_line("link-connect", "|client.test|pass|192.0.2.1:5000|192.0.2.10:25")]
AUTH = [report_line("link-auth", "|fail|evil|user")]


def strict_env() -> dict[str, str]:
    """LANG/LC_ALL=en_US.UTF-8, PYTHONIOENCODING=utf-8:strict, no PYTHONUTF8."""
    return senders_tests.strict_env(forced=True)


class Running(senders_tests.FilterProcess):
    """The senders filter's test harness (a thread reads the answers; log(), close()) for another program: the
    guard, the fake filter, filter-rspamd; under a strict locale."""

    def __init__(self, command: list[str]):
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, env=strict_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr)
        self.answers: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, lines: list[bytes]) -> None:
        try:
            self.process.stdin.write(b"".join(line + b"\n" for line in lines))
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it exited: until() says so

    def until(self, last: bytes) -> list[bytes]:
        """The answers up to the first that starts with `last`."""
        answers: list[bytes] = []
        while not answers or not answers[-1].startswith(last):
            answer = self.answers.get(timeout=10)
            assert answer is not None, f"the program exited ({self.process.wait(5)}):\n{self.log()[-3000:]}"
            answers.append(answer)
        return answers

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start(request):
    """Starts Running, and kills at teardown a program a failed test left running."""
    def start(command: list) -> Running:
        program = Running([str(part) for part in command])
        request.addfinalizer(program.kill)
        return program

    return start


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake-filter"
    script.write_text(FAKE_FILTER)
    return [sys.executable, script, tmp_path / "fake.pid"]


def guarded(command: list, *options: str) -> list:
    return [sys.executable, SCRIPT, "--max-line", "64000", *options, "--"] + command


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def data_lines(answers: list[bytes]) -> list[bytes]:
    return [answer.split(b"|", 3)[3] for answer in answers if answer.startswith(b"filter-dataline|")]


def test_a_hostile_session_through_the_guard_leaves_the_filter_running(start, fake, tmp_path):
    program = start(guarded(fake))
    program.send(CONFIG)
    assert program.until(b"register|ready") == FAKE + [b"register|report|smtp-in|tx-reset", b"register|ready"]
    pid = int((tmp_path / "fake.pid").read_text())
    long_message = ["Subject: long", "", b"x" * 65500, b"y" * MB, b"z" * 65454, "end"]
    program.send(CONNECT + AUTH + message("tok2", long_message) + [report_line("tx-reset", "|679b9605")])
    answers = program.until(b"filter-result|")
    assert data_lines(answers) == [b"Subject: long", b"", b"x" * 64000, b"y" * 64000, b"z" * 64000, b"end", b"."]
    assert answers[-1] == b"filter-result|%s|tok2|%s" % (SESSION, REFUSED)
    program.send(message("tok3", ["Subject: fine", "", b"w" * 64000, ".."]) + [report_line("link-disconnect")])
    answers = program.until(b"filter-result|")
    assert data_lines(answers) == [b"Subject: fine", b"", b"w" * 64000, b"..", b"."]
    assert answers[-1] == b"filter-result|%s|tok3|proceed" % SESSION
    assert program.process.poll() is None and running(pid)
    assert program.close() == 0
    assert not running(pid)
    log = program.log()
    assert "opendove-filter-guard: session 8b13a1c50f1f3924: a line of 65500 bytes cut to 64000" in log
    assert f"opendove-filter-guard: session 8b13a1c50f1f3924: refused: {REFUSED[7:].decode()}" in log
    assert "fake-filter" not in log and "Traceback" not in log


@pytest.mark.parametrize("modes", [[], ["sign"], ["no-link-auth"], ["sign", "no-link-auth"]],
                         ids=["unsigned", "signed", "unsigned, no link-auth", "signed, no link-auth"])
def test_authenticated_mail_the_filter_gives_back_unsigned_is_refused(start, fake, tmp_path, modes):
    program = start(guarded(fake + modes, "--require-signature"))
    program.send(CONFIG)
    assert program.until(b"register|ready").count(LINK_AUTH) == 1
    signs = "sign" in modes
    sessions = [(SESSION, [PASS], "tok2", b"proceed" if signs else UNSIGNED_REFUSAL),
                (OTHER, [], "tok3", b"proceed")]  # (inbound: not authenticated)
    for session, auth, token, expected in sessions:
        lines = [report_line("link-connect", "|client.test|pass|192.0.2.1:5000|192.0.2.10:587", session=session)]
        lines += auth + message(token, UNSIGNED, session)
        program.send(lines[:-1])  # as smtpd does: the commit once the filter has given the message back
        answers = program.until(b"filter-dataline|%s|tok1|." % session)
        assert data_lines(answers)[0].startswith(b"DKIM-Signature: ") == signs
        program.send(lines[-1:])
        assert program.until(b"filter-result|") == [b"filter-result|%s|%s|%s" % (session, token.encode(), expected)]
    pid = int((tmp_path / "fake.pid").read_text())
    assert program.process.poll() is None and running(pid)
    assert program.close() == 0
    log = program.log()
    refused = f"opendove-filter-guard: session {SESSION.decode()}: refused: {UNSIGNED_REFUSAL[7:].decode()}"
    assert (refused in log) != signs and OTHER.decode() not in log
    assert "alice" not in log and "secret" not in log and "fake-filter" not in log and "Traceback" not in log


@pytest.mark.parametrize("attack, code, why", [
    (AUTH, 1, "invalid input, shouldn't happen"),
    (message("tok2", [b"x" * 65500]), 0, "no more lines to scan"),
    ([report_line("tx-reset", "|1")], 1, "invalid stream"),
], ids=["link-auth", "long line", "unregistered report"])
def test_without_the_guard_the_fake_filter_exits_like_filter_rspamd(start, fake, attack, code, why):
    program = start(fake)
    program.send(CONFIG + CONNECT + attack)
    assert program.process.wait(timeout=10) == code
    assert why in program.log()


@pytest.mark.parametrize("last, code, logged", [
    ("EXIT 3", 3, "the filter exited with status 3"),
    ("KILL", 137, "the filter was killed by signal 9"),
])
def test_the_filter_exiting_ends_the_guard_with_its_status(start, fake, last, code, logged):
    program = start(guarded(fake))
    program.send(CONFIG + CONNECT + [report_line("tx-begin", "|1"), filter_line("data-line", "tok1", last)])
    assert program.process.wait(timeout=10) == code
    assert f"opendove-filter-guard: {logged}; exiting" in program.log()


def test_smtpd_gone_ends_the_guard_quietly(fake, tmp_path):
    process = subprocess.Popen([str(part) for part in guarded(fake)], env=strict_env(), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    try:
        process.stdin.write(b"".join(line + b"\n" for line in CONFIG + CONNECT + message("tok2", ["hi"]) * 100))
        process.stdin.close()
    except BrokenPipeError:
        pass
    assert process.wait(timeout=10) == 0
    assert b"opendove-filter-guard" not in process.stderr.read()
    pid = int((tmp_path / "fake.pid").read_text())
    deadline = time.monotonic() + 5
    while running(pid) and time.monotonic() < deadline:  # it reads the end of its input
        time.sleep(0.05)
    assert not running(pid)


@pytest.mark.parametrize("args, logged", [
    (["--max-line", "10", "--", "/bin/true"], "usage: opendove-filter-guard"),
    (["--", "/nonexistent/filter"], "opendove-filter-guard: cannot start /nonexistent/filter"),
])
def test_a_guard_that_cannot_start_the_filter_says_why(args, logged):
    result = subprocess.run([sys.executable, SCRIPT] + args, env=strict_env(), capture_output=True, timeout=10,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 1 and logged in result.stderr.decode()


# The real filter-rspamd binaries, where this machine has them --------------------------------------------

REAL = {"0.1.7": "/tmp/x/bookworm/opensmtpd-filter-rspamd_0.1.7-1+b7_amd64/usr/libexec/opensmtpd/filter-rspamd",
        "0.1.8": "/tmp/x/trixie/opensmtpd-filter-rspamd_0.1.8-1+b10_amd64/usr/libexec/opensmtpd/filter-rspamd"}
# (version, attack): the unguarded filter's exit status and its last log line ("": 0.1.7 exits without a word);
# None: it goes on.
UNGUARDED = {("0.1.7", "link-auth"): (1, "invalid input, shouldn't happen"), ("0.1.8", "link-auth"): None,
             ("0.1.7", "long line"): (0, ""), ("0.1.8", "long line"): (0, "no more lines to scan. exiting...")}


@pytest.mark.parametrize("guarded_run", [False, True], ids=["unguarded", "guarded"])
@pytest.mark.parametrize("attack", ["link-auth", "long line"])
@pytest.mark.parametrize("version", REAL)
def test_the_real_filter_rspamd(start, tmp_path, version, attack, guarded_run):
    if not Path(REAL[version]).is_file():
        pytest.skip(f"no filter-rspamd {version} binary on this machine")
    binary = tmp_path / "filter-rspamd"
    shutil.copy(REAL[version], binary)
    command = [binary, "-url", "http://127.0.0.1:1"]  # rspamd unreachable: it answers commit with 421
    program = start(guarded(command) if guarded_run else command)
    program.send(CONFIG)
    program.until(b"register|ready")
    body = ["Subject: long", "", b"x" * 65500] if attack == "long line" else ["Subject: hi", "", "body"]
    lines = CONNECT + (AUTH if attack == "link-auth" else []) + message("tok2", body)
    # As smtpd does: commit once the filter has given the message back.
    program.send(lines[:-1])
    expected = None if guarded_run else UNGUARDED[version, attack]
    if expected:
        assert program.process.wait(timeout=10) == expected[0]
        assert program.log().rstrip().endswith(expected[1])
        return
    answers = program.until(b"filter-dataline|%s|tok1|." % SESSION)
    assert data_lines(answers)[2:] == ([b"x" * 64000, b"."] if attack == "long line" else [b"body", b"."])
    program.send(lines[-1:])
    assert program.until(b"filter-result|")[-1] == b"filter-result|%s|tok2|%s" % (
        SESSION, REFUSED if attack == "long line" else b"reject|421 server internal error")
    assert program.process.poll() is None
    assert program.close() == 0
