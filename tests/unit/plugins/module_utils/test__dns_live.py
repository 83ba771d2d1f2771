"""Unit tests of the live check behind dns_records state=query (_dns_live.py): the status of each record from
made-up answers (ok, missing, different, stale, extra, unreachable) and which fail the check; questions to a real
BIND (tests/unit/named_server.py) and to servers that refuse, are not authorities or do not answer; finding a
zone's name servers and skipping those this host has no route to; the MTA-STS policy fetched over HTTPS from a
server on 127.0.0.1 with a certificate of a test CA. Only 127.0.0.1 is ever asked."""

from __future__ import annotations

import datetime
import errno
import http.server
import socket
import ssl
import threading
import time
from pathlib import Path

import dns.exception
import dns.query
import dns.rcode
import dns.resolver
import dns.update
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ansible_collections.opendove.mailserver.plugins.module_utils import _dns_live as live
from ansible_collections.opendove.mailserver.plugins.module_utils._spf_live import SpfLiveError
from ansible_collections.opendove.mailserver.plugins.module_utils import _dns_publish as pub
from ansible_collections.opendove.mailserver.plugins.module_utils import _mta_sts
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import fqdn, site_records, tlsa_value
from certificates import certificate
from named_server import SECRET, free_port
from smtp_server import SmtpServer

NS1, NS2 = "192.0.2.53", "198.51.100.53"  # only ever given to the made-up `ask`s
MX = {"name": "d.test.", "type": "MX", "ttl": 300, "values": ["10 mx1.d.test."]}
SPF = {"name": "d.test.", "type": "TXT", "ttl": 300, "values": [["v=spf1 mx -all"]]}
DMARC = {"name": "_dmarc.d.test.", "type": "TXT", "ttl": 300, "values": [["v=DMARC1; p=reject"]]}
STS = {"name": "_mta-sts.d.test.", "type": "TXT", "ttl": 300, "values": [["v=STSv1; id=new"]]}
DKIM = {"name": "20261125._domainkey.d.test.", "type": "TXT", "ttl": 300, "values": [["v=DKIM1; k=rsa; p=NEW"]]}
SRV = {"name": "_imaps._tcp.d.test.", "type": "SRV", "ttl": 300, "values": ["10 1 993 mx1.d.test."]}
TLSRPT = {"name": "_smtp._tls.d.test.", "type": "TXT", "ttl": 300, "values": [["v=TLSRPTv1; rua=mailto:t@d.test"]]}
A = {"name": "mx1.d.test.", "type": "A", "ttl": 300, "values": ["192.0.2.66"]}
PTR = {"name": "66.2.0.192.in-addr.arpa.", "type": "PTR", "ttl": 300, "values": ["mx1.d.test."]}


def answers(served: dict):
    """An `ask` whose servers serve `served`, {server: {(name, type): values, or an exception to raise}}; []
    for anything else. Its `calls` are the questions asked."""
    def ask(name, rdtype, server):
        ask.calls.append((name, rdtype, server))
        answer = served[server].get((fqdn(name).lower(), rdtype), [])
        if isinstance(answer, Exception):
            raise answer
        return answer
    ask.calls = []
    return ask


def check(record: dict, *by_server, stale=()) -> dict:
    """check_record of record against servers NS1 (, NS2) serving the values given (or raising)."""
    servers = [NS1, NS2][:len(by_server)]
    ask = answers({server: {(record["name"], record["type"]): got} for server, got in zip(servers, by_server)})
    return live.check_record(record, servers, ask, stale)


# --- The status of a record, from made-up answers


@pytest.mark.parametrize("record, got, status", [
    (MX, ["10 mx1.d.test."], "ok"),
    (MX, ["10 MX1.D.Test."], "ok"),  # names in any case
    (MX, [], "missing"),
    (MX, ["10 mx2.d.test."], "different"),
    (MX, ["20 mx1.d.test."], "different"),
    (MX, ["10 mx1.d.test.", "20 old.d.test."], "extra"),  # an MX host no longer in the site
    # The user's own TXT records beside SPF are not the collection's: neither extra nor counted as SPF.
    (SPF, [["google-site-verification=abc"], ["v=spf1 mx -all"]], "ok"),
    (SPF, [["v=spf1 ", "mx -all"]], "ok"),  # split into strings as a zone may publish it
    (SPF, [["google-site-verification=abc"]], "missing"),
    (SPF, [["v=spf1 a -all"]], "different"),
    (SPF, [["v=spf1 mx -all"], ["v=spf1 -all"]], "extra"),  # a second SPF record: both are void (RFC 7208 4.5)
    (DMARC, [["v=DMARC1; p=none"]], "different"),
    (DMARC, [["v=DMARC1; p=reject"], ["v=DMARC1; p=none"]], "extra"),
    (DKIM, [["v=DKIM1; k=rsa; p=NEW"]], "ok"),
    (DKIM, [["v=DKIM1; k=rsa; p=OTHER"]], "different"),
    (STS, [["v=STSv1; id=old"]], "stale"),  # the id of an older policy
    (STS, [["v=STSv1; id=old"], ["v=STSv1; id=new"]], "extra"),
    (STS, [["not a policy id"]], "different"),
    (A, ["192.0.2.67"], "different"),
    # Forward-confirmed reverse DNS: the PTR of each address of an MX host names that host.
    (PTR, ["mx1.d.test."], "ok"),
    (PTR, ["MX1.d.test."], "ok"),
    (PTR, ["66.2.0.192.isp.example."], "different"),
    (PTR, [], "missing"),
])
def test_status_of_a_record(record, got, status):
    result = check(record, got)
    assert result["status"] == status and result["servers"] == {NS1: status}
    assert result["name"] == record["name"] and result["type"] == record["type"]


def test_a_retired_key_still_at_its_selector_is_stale():
    assert check(DKIM, [["v=DKIM1; k=rsa; p=OLD"]], stale=[["v=DKIM1; k=rsa; p=OLD"]])["status"] == "stale"
    assert check(DKIM, [["v=DKIM1; k=rsa; p=OTHER"]], stale=[["v=DKIM1; k=rsa; p=OLD"]])["status"] == "different"


@pytest.mark.parametrize("error, said", [
    (live.NotAuthoritative("not authoritative for the name"), "unreachable: not authoritative for the name"),
    (dns.exception.Timeout(), "unreachable: no answer in time"),
    (OSError("answered REFUSED"), "unreachable: answered REFUSED"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "unreachable: [Errno 111] Connection refused"),
    (dns.exception.FormError("bad message"), "unreachable: bad message"),
])
def test_a_server_that_cannot_be_asked_is_named_with_what_went_wrong(error, said):
    result = check(MX, ["10 mx1.d.test."], error)
    assert result["status"] == "unreachable" and result["servers"] == {NS1: "ok", NS2: said}


@pytest.mark.parametrize("first, second, status", [
    (["10 mx1.d.test."], ["10 mx1.d.test."], "ok"),
    (["10 mx1.d.test."], [], "missing"),  # a secondary that has not transferred the zone yet
    (["10 mx2.d.test."], [], "missing"),
    (["10 mx1.d.test.", "20 old.d.test."], ["10 mx2.d.test."], "different"),
    (["10 mx1.d.test.", "20 old.d.test."], ["10 mx1.d.test."], "extra"),
    ([], dns.exception.Timeout(), "unreachable"),
])
def test_the_status_of_a_record_is_the_worst_any_server_gives(first, second, status):
    result = check(MX, first, second)
    assert result["status"] == status and set(result["servers"]) == {NS1, NS2}


def test_no_server_to_ask_is_unreachable():
    assert live.check_record(MX, [], answers({}))["status"] == "unreachable"


def test_a_withdrawn_record_is_stale_while_any_server_serves_it():
    name = "20200101._domainkey.d.test"
    old = [["v=DKIM1; k=rsa; p=OLD"]]
    ask = answers({NS1: {(fqdn(name), "TXT"): old}, NS2: {}})
    assert live.check_withdrawn(name, "TXT", [NS1, NS2], ask) == {
        "name": "20200101._domainkey.d.test.", "type": "TXT", "status": "stale", "advisory": False,
        "servers": {NS1: "stale: still served"}}
    assert live.check_withdrawn(name, "TXT", [NS2], ask) is None
    # A server that cannot be asked says nothing about it (its zone's other records report the server).
    ask = answers({NS1: {(fqdn(name), "TXT"): dns.exception.Timeout()}})
    assert live.check_withdrawn(name, "TXT", [NS1], ask) is None


@pytest.mark.parametrize("status", ["unreachable", "missing", "different", "stale", "extra"])
def test_every_problem_of_a_record_senders_depend_on_fails_the_check_advisory_ones_never(status):
    checks = [dict(live.check_record(record, [], answers({})), status=status) for record in (MX, SRV, TLSRPT)]
    report = {"d.test": checks + [dict(checks[0], name="ok.d.test.", status="ok")]}
    assert [c["name"] for c in report["d.test"] if c["advisory"]] == ["_imaps._tcp.d.test.", "_smtp._tls.d.test."]
    assert live.failed(report) == [checks[0]]
    assert live.failed({"d.test": checks[1:]}) == []


@pytest.mark.parametrize("name", ["_submission._tcp.d.test.", "_submissions._tcp.d.test.", "_imap._tcp.d.test.",
                                  "_imaps._tcp.d.test.", "_smtp._tls.d.test."])
def test_only_the_mail_clients_srv_records_and_tls_reporting_are_advisory(name):
    assert live.check_record(dict(SRV, name=name), [NS1], answers({NS1: {}}))["advisory"] is True
    for record in (MX, SPF, DMARC, STS, DKIM, A, PTR):
        assert live.check_record(record, [NS1], answers({NS1: {}}))["advisory"] is False


def test_table_puts_problems_first_and_says_what_each_server_gave():
    report = {"d.test": [check(MX, ["10 mx1.d.test."], ["10 mx1.d.test."]), check(DMARC, [], []),
                         check(SRV, ["10 1 993 mx1.d.test."], dns.exception.Timeout())],
              "hosts": [check(PTR, ["mx1.d.test."])]}
    assert live.table(report) == [
        "d.test:",
        f"  unreachable SRV   _imaps._tcp.d.test. (advisory)  {NS2}: unreachable: no answer in time",
        f"  missing     TXT   _dmarc.d.test.  {NS1}: missing; {NS2}: missing",
        "  ok          MX    d.test.",
        "hosts:",
        "  ok          PTR   66.2.0.192.in-addr.arpa.",
    ]


# --- The whole site, from made-up answers

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "A" * 348 + "IDAQAB"
HOSTS = [{"hostname": "mx1.d.test", "priority": 10, "addresses": ["192.0.2.66", "192.0.2.67"]},
         {"hostname": "mx2.d.test", "priority": 20, "addresses": ["198.51.100.66", "2001:db8::66"]}]
DOMAINS = [{"name": "d.test", "mta_sts": {"mode": "enforce"}, "tlsrpt_rua": ["mailto:tls@d.test"]}]
RINGS = [{"d.test": {"publish": [{"selector": "20261125-mx1", "key_type": "rsa", "public_key": KEY}],
                     "retired": ["20250101-mx1", "20240101-mx1"]}},
         {"d.test": {"publish": [{"selector": "20261125-mx2", "key_type": "rsa", "public_key": KEY}],
                     "retired": ["20250101-mx2"]}}]


def served_zone(computed: dict) -> dict:
    """{(name, type): values} serving every computed record, the records of one rrset together, as a zone does."""
    zone: dict = {}
    for record in [r for records in computed["domains"].values() for r in records] + computed["hosts"]:
        zone.setdefault((record["name"].lower(), record["type"]), []).extend(record["values"])
    return zone


def statuses(report: dict) -> dict:
    return {(c["name"], c["type"]): c["status"] for checks in report.values() for c in checks}


def test_a_site_served_as_computed_is_ok_though_hosts_have_several_addresses():
    # mta-sts.d.test has the addresses of both MX hosts and mx1 two IPv4 addresses: several records of the site
    # model make one rrset, served as one. (Checked record by record, each was "extra": the check failed on a
    # zone that serves exactly what the site needs.)
    computed = site_records(DOMAINS, HOSTS, RINGS, 300)
    ask = answers({NS1: served_zone(computed)})
    report = live.site_report(computed, DOMAINS, RINGS, lambda name: [NS1], ask, None, ["mx1.d.test", "mx2.d.test"])
    assert set(statuses(report).values()) == {"ok"}, live.table(report)
    assert live.failed(report) == []
    assert statuses(report)[("mta-sts.d.test.", "A")] == "ok" and statuses(report)[("mx1.d.test.", "A")] == "ok"
    assert {("66.2.0.192.in-addr.arpa.", "PTR"), ("6.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
                                                  ".ip6.arpa.", "PTR")} <= set(statuses(report))
    # Each rrset is asked once of each server (and each retired selector, not served).
    assert len(ask.calls) == len(set(ask.calls))


def test_a_site_report_names_what_is_wrong():
    computed = site_records(DOMAINS, HOSTS, RINGS, 300)
    zone = served_zone(computed)
    old_id = _mta_sts.txt_value(_mta_sts.policy_text({"mode": "testing"}, ["mx1.d.test", "mx2.d.test"]))
    zone.update({("_mta-sts.d.test.", "TXT"): [[old_id]], ("_dmarc.d.test.", "TXT"): [],
                 ("20250101-mx1._domainkey.d.test.", "TXT"): [["v=DKIM1; k=rsa; p=OLD"]],
                 ("66.2.0.192.in-addr.arpa.", "PTR"): ["host66.isp.example."],
                 ("_imaps._tcp.d.test.", "SRV"): []})
    report = live.site_report(computed, DOMAINS, RINGS, lambda name: [NS1], answers({NS1: zone}), None,
                              ["mx1.d.test", "mx2.d.test"])
    wrong = {key: status for key, status in statuses(report).items() if status != "ok"}
    assert wrong == {("_mta-sts.d.test.", "TXT"): "stale", ("_dmarc.d.test.", "TXT"): "missing",
                     ("20250101-mx1._domainkey.d.test.", "TXT"): "stale",
                     ("66.2.0.192.in-addr.arpa.", "PTR"): "different", ("_imaps._tcp.d.test.", "SRV"): "missing"}
    assert sorted(f"{c['name']} {c['status']}" for c in live.failed(report)) == [
        "20250101-mx1._domainkey.d.test. stale", "66.2.0.192.in-addr.arpa. different",
        "_dmarc.d.test. missing", "_mta-sts.d.test. stale"]


def test_a_retired_selector_that_is_published_again_is_checked_as_published():
    rings = [{"d.test": {"publish": [{"selector": "20261125-mx1", "key_type": "rsa", "public_key": KEY}],
                         "retired": ["20261125-mx1"]}}]
    computed = site_records(DOMAINS, HOSTS, rings, 300)
    report = live.site_report(computed, DOMAINS, rings, lambda name: [NS1], answers({NS1: served_zone(computed)}),
                              None, ["mx1.d.test", "mx2.d.test"])
    assert [c["status"] for c in report["d.test"] if c["name"].startswith("20261125-mx1.")] == ["ok"]


def test_records_whose_name_servers_cannot_be_found_say_so_by_name():
    computed = site_records(DOMAINS, HOSTS, RINGS, 300)

    def servers_for(name):
        if name.endswith(".arpa.") or name.endswith(".arpa"):
            return [NS1]
        raise pub.DnsPublishError("no name server of d.test. can be asked from here: ns1.d.test. 2001:db8::53 "
                                  "(no route to their addresses)")
    ask = answers({NS1: served_zone(computed)})
    report = live.site_report(computed, DOMAINS, RINGS, servers_for, ask, None, ["mx1.d.test", "mx2.d.test"])
    mx = next(c for c in report["d.test"] if c["type"] == "MX")
    assert mx["status"] == "unreachable" and mx["servers"] == {
        "name servers": "no name server of d.test. can be asked from here: ns1.d.test. 2001:db8::53 "
                        "(no route to their addresses)"}
    assert {c["status"] for c in report["d.test"]} == {"unreachable"}
    assert not any("_domainkey" in c["name"] and "2025" in c["name"] for c in report["d.test"])
    assert {c["status"] for c in report["hosts"] if c["type"] == "PTR"} == {"ok"}
    assert all(call[2] == NS1 for call in ask.calls)


def test_the_policy_of_every_address_of_the_policy_host_is_compared_with_the_published_one():
    computed = site_records(DOMAINS, HOSTS, RINGS, 300)
    text = _mta_sts.policy_text({"mode": "enforce"}, ["mx1.d.test", "mx2.d.test"])
    fetched = []

    def fetch(domain, address):
        fetched.append((domain, address))
        if address == "2001:db8::66":
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        return text if address.startswith("192.") else text.replace("enforce", "testing")

    report = live.site_report(computed, DOMAINS, RINGS, lambda name: [NS1], answers({NS1: served_zone(computed)}),
                              fetch, ["mx1.d.test", "mx2.d.test"])
    policy = next(c for c in report["d.test"] if c["type"] == "HTTPS")
    assert sorted(fetched) == [("d.test", a) for a in ("192.0.2.66", "192.0.2.67", "198.51.100.66", "2001:db8::66")]
    assert policy == {"name": "https://mta-sts.d.test/.well-known/mta-sts.txt", "type": "HTTPS",
                      "status": "unreachable", "advisory": False,
                      "servers": {"192.0.2.66": "ok", "192.0.2.67": "ok",
                                  "198.51.100.66": "different: not the published policy",
                                  "2001:db8::66": "unreachable: [Errno 101] Network is unreachable"}}
    assert policy in live.failed(report)
    # Without fetch, or for a domain without MTA-STS, no policy is fetched.
    for domains, fetcher in ((DOMAINS, None), ([dict(DOMAINS[0], mta_sts=None)], fetch)):
        computed = site_records(domains, HOSTS, RINGS, 300)
        report = live.site_report(computed, domains, RINGS, lambda name: [NS1],
                                  answers({NS1: served_zone(computed)}), fetcher, ["mx1.d.test"])
        assert not any(c["type"] == "HTTPS" for c in report["d.test"])


# --- Asking a real server (BIND on 127.0.0.1, tests/unit/named_server.py); locked.test is never changed


def update(server: str, zone: str, change) -> None:
    message = dns.update.UpdateMessage(zone, keyring=pub.tsig_key("mail-update", "hmac-sha256", SECRET))
    change(message)
    address, port = pub.parse_server(server)
    assert dns.query.tcp(message, address, port=port, timeout=5).rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("name, rdtype, values", [
    ("locked.test", "MX", ["10 mx1.locked.test."]),
    ("LOCKED.test.", "MX", ["10 mx1.locked.test."]),
    ("locked.test", "TXT", [["google-site-verification=abc"], ["v=spf1 a -all"]]),
    ("mx1.locked.test", "A", ["192.0.2.10"]),
    ("locked.test", "CAA", ['0 issue "pki.goog"']),
    ("locked.test", "AAAA", []),  # the name, not the type
    ("nothing.locked.test", "TXT", []),  # NXDOMAIN
])
def test_ask_server_gives_the_authoritative_answer(named, name, rdtype, values):
    assert sorted(live.ask_server(name, rdtype, named, timeout=2)) == values


def test_a_large_answer_is_asked_again_over_tcp(named):
    value = ["a" * 250, "b" * 250, "c" * 250]  # more than a DNS message over UDP holds without EDNS
    update(named, "live.test", lambda m: m.replace("big", 300, "TXT", " ".join(f'"{s}"' for s in value)))
    assert live.ask_server("big.live.test", "TXT", named, timeout=2) == [value]


def test_a_zone_the_server_does_not_serve_is_reported_under_the_servers_name(named):
    with pytest.raises(OSError, match="answered REFUSED"):
        live.ask_server("elsewhere.test", "MX", named, timeout=2)
    record = dict(MX, name="elsewhere.test.")
    result = live.check_record(record, [named], lambda n, t, s: live.ask_server(n, t, s, timeout=2))
    assert result["status"] == "unreachable" and result["servers"] == {named: "unreachable: answered REFUSED"}


def test_an_answer_that_is_not_authoritative_is_not_taken(dns_server):
    # conftest's server answers without the AA flag, as a resolver (or a referral) does.
    dns_server.records["_dmarc.d.test"] = ["v=DMARC1; p=reject"]
    server = f"127.0.0.1#{dns_server.port}"
    with pytest.raises(live.NotAuthoritative):
        live.ask_server("_dmarc.d.test", "TXT", server, timeout=2)
    result = live.check_record(DMARC, [server], lambda n, t, s: live.ask_server(n, t, s, timeout=2))
    assert result["servers"] == {server: "unreachable: not authoritative for the name"}


def test_a_server_that_does_not_answer_is_named_unreachable_without_hanging(named):
    silent = f"127.0.0.1#{free_port()}"
    start = time.monotonic()
    with pytest.raises(dns.exception.Timeout):
        live.ask_server("locked.test", "MX", silent, timeout=0.3)
    result = live.check_record(dict(MX, name="locked.test.", values=["10 mx1.locked.test."]), [named, silent],
                               lambda n, t, s: live.ask_server(n, t, s, timeout=0.3))
    assert time.monotonic() - start < 3
    assert result["status"] == "unreachable"
    assert result["servers"] == {named: "ok", silent: "unreachable: no answer in time"}


def test_a_retired_selector_the_server_still_serves_is_stale(named):
    def ask(n, t, s):
        return live.ask_server(n, t, s, timeout=2)
    assert live.check_withdrawn("20200101._domainkey.locked.test", "TXT", [named], ask) == {
        "name": "20200101._domainkey.locked.test.", "type": "TXT", "status": "stale", "advisory": False,
        "servers": {named: "stale: still served"}}
    assert live.check_withdrawn("20190101._domainkey.locked.test", "TXT", [named], ask) is None


# --- Finding the authoritative servers through a resolver (named, as the resolver on its port)


@pytest.fixture
def resolver(named):
    address, port = pub.parse_server(named)
    result = dns.resolver.Resolver(configure=False)
    result.nameservers, result.port, result.lifetime = [address], port, 2
    return result


@pytest.mark.parametrize("name", ["locked.test", "_dmarc.locked.test.", "nothing.locked.test",
                                  "10.2.0.192.in-addr.arpa."])
def test_the_servers_of_the_zone_holding_a_name_are_found(resolver, name):
    assert live.authoritative_servers(name, resolver, lambda address: True) == ["127.0.0.1"]


def test_name_servers_that_cannot_be_found_are_reported_by_name(resolver):
    with pytest.raises(pub.DnsPublishError, match="^the name servers of _dmarc.elsewhere.test cannot be found: "):
        live.authoritative_servers("_dmarc.elsewhere.test", resolver)


def test_servers_this_host_has_no_route_to_are_skipped_and_none_left_is_reported_by_name(named, resolver):
    def add(message):
        message.add("ns2", 300, "A", "127.0.0.2")
        message.add("ns2", 300, "AAAA", "2001:db8::54")
        message.add("ns6", 300, "AAAA", "2001:db8::53")
        message.add("@", 300, "NS", "ns2")
        message.add("@", 300, "NS", "ns6")
    update(named, "live.test", add)
    v4_only = []

    def ipv4_only(address):
        v4_only.append(address)
        return ":" not in address
    assert live.authoritative_servers("live.test", resolver, ipv4_only) == ["127.0.0.1", "127.0.0.2"]
    assert set(v4_only) == {"127.0.0.1", "127.0.0.2", "2001:db8::53", "2001:db8::54"}
    assert live.authoritative_servers("live.test", resolver, lambda a: True) == [
        "127.0.0.1", "127.0.0.2", "2001:db8::53", "2001:db8::54"]

    # Only IPv6 servers left, and no IPv6 route: the report names each.
    def ipv6_only(message):
        message.delete("@", "NS", "ns1")
        message.delete("@", "NS", "ns2")
    update(named, "live.test", ipv6_only)
    with pytest.raises(pub.DnsPublishError) as raised:
        live.authoritative_servers("_dmarc.live.test", resolver, ipv4_only)
    assert str(raised.value) == ("no name server of live.test. can be asked from here: ns6.live.test. 2001:db8::53 "
                                 "(no route to their addresses)")


def test_a_name_server_whose_address_cannot_be_found_is_skipped_and_named_when_none_is_left(named, resolver):
    # named answers REFUSED for ns.elsewhere.test, a zone it does not serve: that server's address is unknown.
    update(named, "ns.test", lambda message: message.add("@", 300, "NS", "ns.elsewhere.test."))
    assert live.authoritative_servers("_dmarc.ns.test", resolver, lambda a: True) == ["127.0.0.1"]
    update(named, "ns.test", lambda message: message.delete("@", "NS", "ns1"))
    with pytest.raises(pub.DnsPublishError) as raised:
        live.authoritative_servers("_dmarc.ns.test", resolver, lambda a: True)
    assert str(raised.value).startswith("no name server of ns.test. can be asked from here: "
                                        "ns.elsewhere.test. (A lookup failed: ")


def test_can_reach_asks_the_routing_table_only(monkeypatch):
    assert live.can_reach("127.0.0.1") is True

    class NoRoute(socket.socket):
        code = errno.ENETUNREACH

        def connect(self, address):
            raise OSError(self.code, "no route")

    monkeypatch.setattr(live.socket, "socket", NoRoute)
    for code in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        NoRoute.code = code
        assert live.can_reach("2001:db8::53") is False and live.can_reach("192.0.2.53") is False
    # Any other error (a link-local address without its interface: EINVAL) is "cannot ask", not a traceback.
    NoRoute.code = errno.EINVAL
    assert live.can_reach("fe80::1") is False


# --- The MTA-STS policy over HTTPS, from a server on 127.0.0.1 with a certificate of a test CA


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])


def _ca(tmp_path, label: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(f"Test CA {label}")).issuer_name(_name(f"Test CA {label}"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    path = tmp_path / f"ca-{label}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, str(path)


def _leaf(tmp_path, ca_key, ca_cert, hostname: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(hostname)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{hostname}.pem", tmp_path / f"{hostname}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


POLICY = _mta_sts.policy_text({"mode": "enforce"}, ["mx1.pol.test"])


class _PolicyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        host = self.headers.get("Host", "").rsplit(":", 1)[0]
        self.server.requests.append((host, self.path))
        status, content_type, body, headers = self.server.pages.get((host, self.path), (404, "text/plain", "", {}))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body.encode())))
        for header, value in headers.items():
            self.send_header(header, value)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


class _PolicyServer(http.server.ThreadingHTTPServer):
    """HTTPS on 127.0.0.1; the TLS handshake in each request's thread, so a client that gives up stops nothing."""
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _PolicyHandler)
        self.context, self.pages, self.requests = context, {}, []

    def get_request(self):
        sock, address = super().get_request()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address):
        pass  # refused handshakes are what some tests are about


@pytest.fixture(scope="module")
def policy_server(tmp_path_factory):
    """(server, CA file, other CA file): mta-sts.pol.test served on 127.0.0.1:server.server_port."""
    tmp_path = tmp_path_factory.mktemp("mta-sts")
    ca_key, ca_cert, ca_file = _ca(tmp_path, "one")
    other_ca_file = _ca(tmp_path, "two")[2]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_leaf(tmp_path, ca_key, ca_cert, "mta-sts.pol.test"))
    server = _PolicyServer(context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, ca_file, other_ca_file
    server.shutdown()
    server.server_close()


@pytest.fixture
def pages(policy_server):
    server = policy_server[0]
    server.pages.clear()
    server.requests.clear()
    return server.pages


def fetcher(policy_server, ca_file=None, port=None, timeout=2):
    server, default_ca = policy_server[:2]

    def fetch(domain, address):
        return live.fetch_policy(domain, address, ca_file or default_ca, timeout, port or server.server_port)
    return fetch


def test_the_policy_is_fetched_from_the_address_given_with_the_policy_hosts_name(policy_server, pages):
    pages[("mta-sts.pol.test", "/.well-known/mta-sts.txt")] = (200, "text/plain; charset=utf-8", POLICY, {})
    assert fetcher(policy_server)("pol.test", "127.0.0.1") == POLICY
    assert policy_server[0].requests == [("mta-sts.pol.test", "/.well-known/mta-sts.txt")]
    assert live.check_policy("pol.test", POLICY, ["127.0.0.1"], fetcher(policy_server)) == {
        "name": "https://mta-sts.pol.test/.well-known/mta-sts.txt", "type": "HTTPS", "status": "ok",
        "advisory": False, "servers": {"127.0.0.1": "ok"}}


def test_a_policy_address_with_no_route_from_here_is_named_not_failed(policy_server, pages):
    pages[("mta-sts.pol.test", "/.well-known/mta-sts.txt")] = (200, "text/plain", POLICY, {})

    def ipv4_only(address):
        return ":" not in address
    result = live.check_policy("pol.test", POLICY, ["127.0.0.1", "2001:db8::25"], fetcher(policy_server), ipv4_only)
    assert result["status"] == "ok"
    assert result["servers"] == {"127.0.0.1": "ok", "2001:db8::25": "not asked: no route from here"}
    nothing = live.check_policy("pol.test", POLICY, ["2001:db8::25"], fetcher(policy_server), ipv4_only)
    assert nothing["status"] == "unreachable" and nothing["servers"] == {"2001:db8::25": "not asked: no route from here"}


@pytest.mark.parametrize("page, status", [
    ((200, "text/plain", POLICY.replace("enforce", "testing"), {}), "different: not the published policy"),
    ((200, "text/plain", POLICY.replace("\r\n", "\n"), {}), "different: not the published policy"),
    ((200, "text/html", POLICY, {}), "unreachable: Content-Type 'text/html' is not text/plain"),
    ((404, "text/plain", "", {}), "unreachable: HTTP status 404"),
    # Senders do not follow redirects (RFC 8461 3.3).
    ((301, "text/plain", "", {"Location": "https://www.pol.test/mta-sts.txt"}), "unreachable: HTTP status 301"),
])
def test_a_policy_that_is_not_the_published_one_or_not_served_as_senders_need_is_named(
        policy_server, pages, page, status):
    pages[("mta-sts.pol.test", "/.well-known/mta-sts.txt")] = page
    result = live.check_policy("pol.test", POLICY, ["127.0.0.1"], fetcher(policy_server))
    assert result["status"] == status.split(":")[0] and result["servers"] == {"127.0.0.1": status}


def test_a_certificate_senders_would_not_accept_is_named(policy_server, pages):
    pages[("mta-sts.pol.test", "/.well-known/mta-sts.txt")] = (200, "text/plain", POLICY, {})
    pages[("mta-sts.wrong.test", "/.well-known/mta-sts.txt")] = (200, "text/plain", POLICY, {})
    # A CA that did not sign it; a certificate for another name.
    for domain, fetch, said in (("pol.test", fetcher(policy_server, ca_file=policy_server[2]), "unable to get local"),
                                ("wrong.test", fetcher(policy_server), "mta-sts.wrong.test")):
        result = live.check_policy(domain, POLICY, ["127.0.0.1"], fetch)
        assert result["status"] == "unreachable"
        assert "certificate verify failed" in result["servers"]["127.0.0.1"] and said in result["servers"]["127.0.0.1"]
    assert policy_server[0].requests == []


def test_a_policy_host_that_does_not_answer_is_named_unreachable_without_hanging(policy_server):
    closed = free_port()
    with socket.socket() as silent:  # accepts connections, never speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        start = time.monotonic()
        refused = live.check_policy("pol.test", POLICY, ["127.0.0.1"], fetcher(policy_server, port=closed))
        timed_out = live.check_policy("pol.test", POLICY, ["127.0.0.1"],
                                      fetcher(policy_server, port=silent.getsockname()[1], timeout=0.3))
        assert time.monotonic() - start < 3
    assert refused["status"] == "unreachable" and "Connection refused" in refused["servers"]["127.0.0.1"]
    assert timed_out["status"] == "unreachable" and "timed out" in timed_out["servers"]["127.0.0.1"]


# --- The MX hosts' SMTP certificates, from a server on 127.0.0.1 (tests/unit/smtp_server.py)


@pytest.fixture(scope="module")
def smtp():
    server = SmtpServer()
    yield server
    server.close()


def served_by(smtp, ca_file, port=None, timeout=2):
    """check_smtp_certificate's certificate: smtp_certificate on smtp's port (or port) with ca_file."""
    def served(mx_name, address):
        return live.smtp_certificate(mx_name, address, ca_file, timeout, port or smtp.port)
    return served


def test_the_certificate_an_mx_host_serves_after_starttls_is_verified_for_its_name(smtp, tmp_path):
    ca_file = smtp.serve(tmp_path, "mx1.cert.test")
    assert live.check_smtp_certificate("mx1.cert.test", ["127.0.0.1"], served_by(smtp, ca_file)) == {
        "name": "smtp://mx1.cert.test:25 certificate", "type": "TLS", "status": "ok", "advisory": False,
        "servers": {"127.0.0.1": "ok: 90 days left"}}
    # A certificate of several names covers each of them.
    ca_file = smtp.serve(tmp_path, "mail.cert.test", extra_names=("mx1.cert.test",))
    result = live.check_smtp_certificate("mx1.cert.test", ["127.0.0.1"], served_by(smtp, ca_file))
    assert result["status"] == "ok"


@pytest.mark.parametrize("hostname, days_left, trusted, said", [
    ("mx2.cert.test", 90, True, "fail: certificate: Hostname mismatch, certificate is not valid for 'mx1.cert.test'."),
    ("mx1.cert.test", -1, True, "fail: certificate: certificate has expired"),
    ("mx1.cert.test", 90, False, "fail: certificate: self-signed certificate"),  # a CA not trusted
])
def test_a_certificate_senders_enforcing_mta_sts_would_refuse_fails(smtp, tmp_path, hostname, days_left, trusted,
                                                                    said):
    ca_file = smtp.serve(tmp_path, hostname, days_left)
    if not trusted:
        (tmp_path / "other-ca.pem").write_text(certificate("ca.cert.test"))
        ca_file = str(tmp_path / "other-ca.pem")
    result = live.check_smtp_certificate("mx1.cert.test", ["127.0.0.1"], served_by(smtp, ca_file))
    assert result["status"] == "fail" and result["servers"] == {"127.0.0.1": said}
    assert live.failed({"hosts": [result]}) == [result]


def test_a_certificate_near_its_end_is_ok_with_a_warning_the_table_shows(smtp, tmp_path):
    ca_file = smtp.serve(tmp_path, "mx1.cert.test", days_left=5)
    result = live.check_smtp_certificate("mx1.cert.test", ["127.0.0.1"], served_by(smtp, ca_file))
    assert result["status"] == "ok"
    assert result["servers"] == {"127.0.0.1": "ok: 5 days left, warning: fewer than 14, renew it"}
    assert live.failed({"hosts": [result]}) == []
    assert live.table({"hosts": [result]}) == [
        "hosts:", "  ok          TLS   smtp://mx1.cert.test:25 certificate  127.0.0.1: ok: 5 days left, warning: "
                  "fewer than 14, renew it"]
    ca_file = smtp.serve(tmp_path, "mx1.cert.test", days_left=14)
    result = live.check_smtp_certificate("mx1.cert.test", ["127.0.0.1"], served_by(smtp, ca_file))
    assert live.table({"hosts": [result]}) == ["hosts:", "  ok          TLS   smtp://mx1.cert.test:25 certificate"]


def test_an_mx_host_without_starttls_fails(smtp, tmp_path):
    ca_file = smtp.serve(tmp_path, "mx1.cert.test")
    smtp.context = None
    result = live.check_smtp_certificate("mx1.cert.test", ["127.0.0.1"], served_by(smtp, ca_file))
    assert result["status"] == "fail" and result["servers"] == {"127.0.0.1": "fail: no STARTTLS offered"}


def test_an_mx_host_that_does_not_answer_is_named_unreachable_without_hanging(smtp, tmp_path):
    ca_file = smtp.serve(tmp_path, "mx1.cert.test")
    with socket.socket() as silent:  # accepts connections, never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        start = time.monotonic()
        refused = live.check_smtp_certificate("mx1.cert.test", ["127.0.0.1"],
                                              served_by(smtp, ca_file, port=free_port()))
        timed_out = live.check_smtp_certificate("mx1.cert.test", ["127.0.0.1"],
                                                served_by(smtp, ca_file, silent.getsockname()[1], timeout=0.3))
        assert time.monotonic() - start < 3
    assert refused["status"] == "unreachable" and "Connection refused" in refused["servers"]["127.0.0.1"]
    assert timed_out["status"] == "unreachable" and "timed out" in timed_out["servers"]["127.0.0.1"]


def test_an_mx_address_with_no_route_from_here_is_named_not_asked(smtp, tmp_path):
    ca_file = smtp.serve(tmp_path, "mx1.cert.test")

    def ipv4_only(address):
        return ":" not in address
    result = live.check_smtp_certificate("mx1.cert.test", ["127.0.0.1", "2001:db8::25"],
                                         served_by(smtp, ca_file), reachable=ipv4_only)
    assert result["status"] == "ok"
    assert result["servers"] == {"127.0.0.1": "ok: 90 days left", "2001:db8::25": "not asked: no route from here"}
    nothing = live.check_smtp_certificate("mx1.cert.test", ["2001:db8::25"], served_by(smtp, ca_file),
                                          reachable=ipv4_only)
    assert nothing["status"] == "unreachable"
    assert nothing["servers"] == {"2001:db8::25": "not asked: no route from here"}


def test_the_certificate_of_every_address_of_every_mx_host_is_among_the_hosts_checks():
    computed = site_records(DOMAINS, HOSTS, RINGS, 300)
    asked = []

    def served(mx_name, address):
        asked.append((mx_name, address))
        if address == "198.51.100.66":
            raise ValueError("no STARTTLS offered")
        return live.SmtpCertificate(60, b"")  # no TLSA records: the certificate itself is not looked at

    report = live.site_report(computed, DOMAINS, RINGS, lambda name: [NS1], answers({NS1: served_zone(computed)}),
                              None, ["mx1.d.test", "mx2.d.test"], served)
    assert sorted(asked) == [("mx1.d.test", "192.0.2.66"), ("mx1.d.test", "192.0.2.67"),
                             ("mx2.d.test", "198.51.100.66"), ("mx2.d.test", "2001:db8::66")]
    certificates = {c["name"]: c for c in report["hosts"] if c["type"] == "TLS"}
    assert certificates["smtp://mx1.d.test:25 certificate"]["status"] == "ok"
    assert certificates["smtp://mx2.d.test:25 certificate"]["servers"] == {
        "198.51.100.66": "fail: no STARTTLS offered", "2001:db8::66": "ok: 60 days left"}
    assert live.failed(report) == [certificates["smtp://mx2.d.test:25 certificate"]]
    # Without a certificate function, no certificate is asked for.
    report = live.site_report(computed, DOMAINS, RINGS, lambda name: [NS1], answers({NS1: served_zone(computed)}),
                              None, ["mx1.d.test", "mx2.d.test"])
    assert not any(c["type"] == "TLS" for c in report["hosts"])


# During a key change the records name the current key and the next one; no TLSA records, no DANE comparison.
@pytest.mark.parametrize("tlsa_keys", [["served"], ["next", "served"], []])
def test_a_key_the_tlsa_records_of_the_mx_host_name_or_no_tlsa_records_is_ok(smtp, tmp_path, tlsa_keys):
    ca_file = smtp.serve(tmp_path, "mx1.cert.test")
    tlsa_of = {"served": tlsa_value(Path(ca_file).read_text()), "next": tlsa_value(certificate("mx1.cert.test"))}
    result = live.check_smtp_certificate("mx1.cert.test", ["127.0.0.1"], served_by(smtp, ca_file),
                                         [tlsa_of[key] for key in tlsa_keys])
    assert result["status"] == "ok" and result["servers"] == {"127.0.0.1": "ok: 90 days left"}


def test_a_key_no_tlsa_record_of_the_mx_host_names_fails_as_dane_senders_refuse_it(smtp, tmp_path):
    ca_file = smtp.serve(tmp_path, "mx1.cert.test")
    # A certificate MTA-STS senders accept, its key not the one the TLSA record names (a new key, records not updated).
    result = live.check_smtp_certificate("mx1.cert.test", ["127.0.0.1"], served_by(smtp, ca_file),
                                         [tlsa_value(certificate("mx1.cert.test"))])
    assert result["status"] == "fail" and result["servers"] == {"127.0.0.1": "fail: the key served matches no TLSA "
                                                                "record of _25._tcp.mx1.cert.test (DANE senders refuse it)"}
    assert live.failed({"hosts": [result]}) == [result]


def test_the_key_each_mx_host_serves_is_compared_with_its_own_tlsa_records_among_the_computed_ones():
    mx1_pem, mx2_pem = certificate("mx1.d.test"), certificate("mx2.d.test")
    hosts = [dict(HOSTS[0], certificates=[mx1_pem]), dict(HOSTS[1], certificates=[mx2_pem])]
    computed = site_records(DOMAINS, hosts, RINGS, 300)

    def served(mx_name, address):
        # mx1 serves its key; mx2 serves mx1's key on its IPv4 address, its own on the other.
        pem = mx2_pem if address == "2001:db8::66" else mx1_pem
        return live.SmtpCertificate(60, ssl.PEM_cert_to_DER_cert(pem))

    report = live.site_report(computed, DOMAINS, RINGS, lambda name: [NS1], answers({NS1: served_zone(computed)}),
                              None, ["mx1.d.test", "mx2.d.test"], served)
    certificates = {c["name"]: c for c in report["hosts"] if c["type"] == "TLS"}
    assert certificates["smtp://mx1.d.test:25 certificate"]["status"] == "ok"
    assert certificates["smtp://mx2.d.test:25 certificate"]["servers"] == {
        "198.51.100.66": "fail: the key served matches no TLSA record of _25._tcp.mx2.d.test (DANE senders refuse it)",
        "2001:db8::66": "ok: 60 days left"}
    assert live.failed(report) == [certificates["smtp://mx2.d.test:25 certificate"]]


# --- SPF as receivers evaluate it (the checks come from _spf_live.spf_checks)


def test_the_sites_spf_policy_is_found_among_the_records_and_results_become_checks():
    records = [{"name": "d.test.", "type": "TXT", "values": [["google-site-verification=x"], ["v=spf1 mx ", "-all"]]},
               {"name": "_dmarc.d.test.", "type": "TXT", "values": [["v=DMARC1; p=reject"]]}]
    assert live.spf_policy(records, "d.test") == "v=spf1 mx -all"
    assert live.spf_policy(records[1:], "d.test") is None
    checks = live.spf_report("d.test", lambda: [{"name": "SPF lookups", "status": "ok", "detail": "3 lookups"},
                                                {"name": "SPF 192.0.2.1", "status": "fail", "detail": "softfail"}])
    assert checks == [
        {"name": "d.test. lookups", "type": "SPF", "status": "ok", "advisory": False, "servers": {"pyspf": "3 lookups"}},
        {"name": "d.test. 192.0.2.1", "type": "SPF", "status": "fail", "advisory": False,
         "servers": {"pyspf": "softfail"}}]
    assert live.failed({"d.test": checks}) == checks[1:]
    assert "  fail        SPF   d.test. 192.0.2.1  pyspf: softfail" in live.table({"d.test": checks})


def test_an_spf_check_that_cannot_run_is_one_failing_check_saying_why():
    def cannot():
        raise SpfLiveError("the SPF checks need the Python package pyspf")
    assert live.spf_report("d.test", cannot) == [{"name": "d.test. evaluation", "type": "SPF", "status": "fail",
                                                  "advisory": False,
                                                  "servers": {"pyspf": "the SPF checks need the Python package pyspf"}}]
