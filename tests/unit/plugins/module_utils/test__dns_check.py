"""Unit tests of the DNS visibility check, with made-up server answers (no network)."""

from __future__ import annotations

import dns.exception
import pytest
from ansible_collections.opendove.mailserver.plugins.module_utils import _dns_check as check

NAME, VALUE = "s1._domainkey.example.test", "v=DKIM1; k=rsa; h=sha256; t=s; p=NEW"


def answers(by_server: dict):
    """An `ask` whose servers answer as given: a list of values, or an exception to raise."""
    def ask(name, server):
        assert name == NAME
        answer = by_server[server]
        if isinstance(answer, Exception):
            raise answer
        return answer
    return ask


@pytest.mark.parametrize("answer, status", [
    ([VALUE], "visible"),
    ([], "absent"),
    (["v=DKIM1; k=rsa; h=sha256; t=s; p=OLD"], "mismatch"),
    ([VALUE, "v=spf1 -all"], "mismatch"),
    ([VALUE + " "], "mismatch"),
    (dns.exception.Timeout(), "timeout"),
    (OSError("connection refused"), "unreachable"),
    (dns.exception.FormError(), "unreachable"),
])
def test_one_server(answer, status):
    assert check.record_status(NAME, VALUE, ["192.0.2.1"], answers({"192.0.2.1": answer})) == status


def test_every_server_must_have_it():
    ask = answers({"192.0.2.1": [VALUE], "192.0.2.2": []})
    assert check.record_status(NAME, VALUE, ["192.0.2.1", "192.0.2.2"], ask) == "absent"
    ask = answers({"192.0.2.1": [VALUE], "192.0.2.2": dns.exception.Timeout()})
    assert check.record_status(NAME, VALUE, ["192.0.2.1", "192.0.2.2"], ask) == "timeout"
    ask = answers({"192.0.2.1": [VALUE], "192.0.2.2": [VALUE]})
    assert check.record_status(NAME, VALUE, ["192.0.2.1", "192.0.2.2"], ask) == "visible"


def test_no_server_is_not_a_go_ahead():
    assert check.record_status(NAME, VALUE, [], answers({})) == "unreachable"


def test_ask_server_reads_a_real_answer(dns_server):
    """Over UDP, from a DNS server on 127.0.0.1 (tests/unit/conftest.py), never the machine's resolver."""
    dns_server.records[NAME] = [VALUE]
    server = f"127.0.0.1#{dns_server.port}"
    assert check.ask_server(NAME, server) == [VALUE]
    assert check.ask_server("none._domainkey.example.test", server) == []
    assert check.record_status(NAME, VALUE, [server]) == "visible"
    assert check.record_status(NAME, VALUE + "x", [server]) == "mismatch"
