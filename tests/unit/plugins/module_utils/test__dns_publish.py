"""Unit tests of publishing by dynamic update: the pure decisions as tables, then the protocol against a real
BIND (named, from the bind9 package) started for this module on 127.0.0.1."""

from __future__ import annotations

import base64

import dns.message
import pytest
from named_server import OTHER, SECRET, SECRETS, WRONG, free_port
from ansible_collections.opendove.mailserver.plugins.module_utils import _dns_publish as pub
from ansible_collections.opendove.mailserver.plugins.module_utils import _dns_records as rec

D = "example.test."
KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "A" * 348 + "IDAQAB"  # two TXT strings


def record(name: str, rdtype: str, ttl: int, *values) -> dict:
    return {"name": name, "type": rdtype, "ttl": ttl, "values": list(values)}


def failure(call, *args) -> str:
    """The message of the DnsPublishError call(*args) raises, which must not hold any secret."""
    with pytest.raises(pub.DnsPublishError) as caught:
        call(*args)
    message = str(caught.value)
    assert not any(secret in message or secret in repr(caught.value.args) for secret in SECRETS)
    return message


# --- TSIG keys and servers


@pytest.mark.parametrize("algorithm", pub.ALGORITHMS)
def test_tsig_key_of_each_algorithm(algorithm):
    key = pub.tsig_key("mail-update", algorithm, SECRET)
    assert key.name.to_text() == "mail-update."
    assert key.secret == base64.b64decode(SECRET)
    message = dns.message.make_query("example.test", "SOA")
    message.use_tsig(key)
    assert dns.message.from_wire(message.to_wire(), keyring=key).had_tsig


@pytest.mark.parametrize("secret", ["not base64!", "", "YWJj\n", "YWJ", "YW Jj", "===="])
def test_tsig_secret_must_be_base64(secret):
    assert failure(pub.tsig_key, "mail-update", "hmac-sha256", secret) == \
        "TSIG secret of key mail-update is not base64"


def test_tsig_secret_is_not_in_the_message_of_a_bad_algorithm():
    message = failure(pub.tsig_key, "mail-update", "hmac-sha257", SECRET)
    assert "hmac-sha257" in message and "hmac-sha256" in message


@pytest.mark.parametrize("server, address, port", [
    ("192.0.2.1", "192.0.2.1", 53),
    ("192.0.2.1#5353", "192.0.2.1", 5353),
    ("2001:db8::1", "2001:db8::1", 53),
    ("2001:DB8::1#53", "2001:db8::1", 53),
])
def test_parse_server(server, address, port):
    assert pub.parse_server(server) == (address, port)


@pytest.mark.parametrize("server", ["ns1.example.test", "192.0.2.1:53", "[2001:db8::1]:53", "192.0.2.1#",
                                    "192.0.2.1#0", "192.0.2.1#65536", "192.0.2.300", "", " 192.0.2.1", None])
def test_parse_server_refuses_anything_else(server):
    assert "must be an IP address, optionally followed by #port" in failure(pub.parse_server, server)


# --- Ownership

CAA_LE = '0 issue "letsencrypt.org"'


@pytest.mark.parametrize("name, rdtype, value, hosts, expected", [
    (D, "MX", "10 mx1.example.test.", {}, True),
    ("EXAMPLE.test", "mx", "10 mx1.example.test.", {}, True),
    (D, "TXT", ["v=spf1 mx -all"], {}, True),
    (D, "TXT", ["V=SPF1 -all"], {}, True),
    (D, "TXT", ["v=spf1"], {}, True),
    (D, "TXT", ["v=spf1", " mx -all"], {}, True),
    (D, "TXT", ["v=spf10 -all"], {}, False),
    (D, "TXT", ["google-site-verification=abc"], {}, False),
    (D, "A", "192.0.2.1", {}, False),
    (D, "NS", "ns1.example.test.", {}, False),
    ("_dmarc.example.test.", "TXT", ["v=DMARC1; p=none"], {}, True),
    ("_dmarc.example.test.", "CNAME", "dmarc.provider.test.", {}, False),
    ("_mta-sts.example.test.", "TXT", ["v=STSv1; id=1"], {}, True),
    ("_smtp._tls.example.test.", "TXT", ["v=TLSRPTv1; rua=mailto:a@example.test"], {}, True),
    ("mta-sts.example.test.", "A", "192.0.2.1", {}, True),
    ("mta-sts.example.test.", "AAAA", "2001:db8::1", {}, True),
    ("mta-sts.example.test.", "TXT", ["x"], {}, False),
    ("_submission._tcp.example.test.", "SRV", "0 1 587 mx1.example.test.", {}, True),
    ("_submissions._tcp.example.test.", "SRV", "0 1 465 mx1.example.test.", {}, True),
    ("_imap._tcp.example.test.", "SRV", "0 1 143 mx1.example.test.", {}, True),
    ("_imaps._tcp.example.test.", "SRV", "0 1 993 mx1.example.test.", {}, True),
    ("_caldav._tcp.example.test.", "SRV", "0 1 443 dav.example.test.", {}, False),
    ("_dmarc.sub.example.test.", "TXT", ["v=DMARC1; p=none"], {}, False),
    ("20261125._domainkey.example.test.", "TXT", ["v=DKIM1; p="], {}, True),
    ("20261125-ed25519._domainkey.example.test.", "TXT", ["v=DKIM1; p="], {}, True),
    ("20261125-mx1-ed25519._domainkey.example.test.", "TXT", ["v=DKIM1; p="], {}, True),
    ("20261125-2._domainkey.example.test.", "TXT", ["v=DKIM1; p="], {}, True),
    ("google._domainkey.example.test.", "TXT", ["v=DKIM1; p=G"], {}, False),
    ("s1._domainkey.example.test.", "TXT", ["v=DKIM1; p=G"], {}, False),
    ("selector1._domainkey.example.test.", "TXT", ["v=DKIM1; p=G"], {}, False),
    ("2026._domainkey.example.test.", "TXT", ["v=DKIM1; p=G"], {}, False),
    ("20261125x._domainkey.example.test.", "TXT", ["v=DKIM1; p=G"], {}, False),
    ("a.20261125._domainkey.example.test.", "TXT", ["v=DKIM1; p=G"], {}, False),
    ("20261125._domainkey.example.org.", "TXT", ["v=DKIM1; p="], {}, False),
    ("20261125._domainkey.other.example.", "TXT", ["v=DKIM1; p="], {}, True),
    ("other.example.", "TXT", ["v=spf1 -all"], {}, True),
    ("mx1.example.test.", "A", "192.0.2.10", {}, False),
    ("mx1.example.test.", "A", "192.0.2.10", {"hosts": ["mx1.example.test"]}, True),
    ("mx1.example.test.", "AAAA", "2001:db8::10", {"hosts": ["mx1.example.test."]}, True),
    ("mx1.example.test.", "TXT", ["x"], {"hosts": ["mx1.example.test."]}, False),
    ("_25._tcp.mx1.example.test.", "TLSA", "3 1 1 ab", {}, False),
    ("_25._tcp.mx1.example.test.", "TLSA", "3 1 1 ab", {"mx_hosts": ["mx1.example.test."]}, True),
    ("_25._tcp.mx1.example.test.", "TXT", ["x"], {"mx_hosts": ["mx1.example.test."]}, False),
    ("_25._tcp.www.example.test.", "TLSA", "3 1 1 ab", {"mx_hosts": ["mx1.example.test."]}, False),
    ("mx1.example.test.", "CAA", CAA_LE, {"mx_hosts": ["mx1.example.test."]}, True),
    ("MX1.example.test", "caa", '0 iodef "mailto:ca@example.test"', {"mx_hosts": ["mx1.example.test"]}, True),
    ("mx1.example.test.", "CAA", CAA_LE, {}, False),
    ("mx1.example.test.", "CAA", CAA_LE, {"hosts": ["mx1.example.test."]}, False),
    ("www.example.test.", "CAA", CAA_LE, {"mx_hosts": ["mx1.example.test."]}, False),
    ("_25._tcp.mx1.example.test.", "CAA", CAA_LE, {"mx_hosts": ["mx1.example.test."]}, False),
    ("mta-sts.example.test.", "CAA", CAA_LE, {}, True),
    ("mta-sts.sub.example.test.", "CAA", CAA_LE, {}, False),
    (D, "CAA", CAA_LE, {}, False),
    (D, "CAA", CAA_LE, {"mx_hosts": [D]}, False),
    ("other.example.", "CAA", CAA_LE, {"mx_hosts": ["other.example."]}, False),
])
def test_owned(name, rdtype, value, hosts, expected):
    assert pub.owned(name, rdtype, value, [D, "other.example"], **hosts) is expected


# --- Planning

MX = record(D, "MX", 300, "10 mx1.example.test.")
SPF = record(D, "TXT", 300, ["v=spf1 mx -all"])
DKIM = record("20261125._domainkey.example.test.", "TXT", 300, ["v=DKIM1; k=rsa; p=KEY"])
DMARC = record("_dmarc.example.test.", "TXT", 300, ["v=DMARC1; p=reject"])
MX1 = record("mx1.example.test.", "A", 300, "192.0.2.10")
TLSA_OLD, TLSA_WWW = "3 1 1 " + "ab" * 32, "3 1 1 " + "cd" * 32
WANTED = [MX, SPF, DKIM, DMARC, MX1]
LIVE = {
    (D, "SOA"): {"ttl": 300, "values": ["ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300"]},
    (D, "NS"): {"ttl": 300, "values": ["ns1.example.test."]},
    (D, "MX"): {"ttl": 300, "values": ["10 mx1.example.test."]},
    (D, "TXT"): {"ttl": 300, "values": [["google-site-verification=abc"], ["v=spf1 mx -all"]]},
    ("mx1.example.test.", "A"): {"ttl": 300, "values": ["192.0.2.10"]},
    ("20261125._domainkey.example.test.", "TXT"): {"ttl": 300, "values": [["v=DKIM1; k=rsa; p=KEY"]]},
    ("google._domainkey.example.test.", "TXT"): {"ttl": 300, "values": [["v=DKIM1; p=G"]]},
    ("s1._domainkey.example.test.", "TXT"): {"ttl": 300, "values": [["v=DKIM1; p=S1"]]},
    ("_dmarc.example.test.", "TXT"): {"ttl": 300, "values": [["v=DMARC1; p=reject"]]},
}


def live_with(rrsets: dict) -> dict:
    """LIVE with rrsets {(name relative to D or @, type): (ttl, values) or None to drop it}."""
    live = dict(LIVE)
    for (label, rdtype), rrset in rrsets.items():
        name = D if label == "@" else f"{label}.{D}"
        if rrset is None:
            del live[(name, rdtype)]
        else:
            live[(name, rdtype)] = {"ttl": rrset[0], "values": rrset[1]}
    return live


def summary(changes: pub.Plan) -> dict:
    return {what: [(r["name"], r["type"], r["ttl"], r["values"], r.get("before")) for r in getattr(changes, what)]
            for what in ("add", "change", "remove") if getattr(changes, what)}


@pytest.mark.parametrize("wanted, live, expected", [
    pytest.param(WANTED, LIVE, {}, id="equal"),
    pytest.param([record(D, "MX", 300, "10 MX1.Example.Test"), SPF, DKIM, DMARC, MX1], LIVE, {},
                 id="same-rdata-written-differently"),
    pytest.param(WANTED, live_with({("20261125._domainkey", "TXT"): (300, [["v=DKIM1; ", "k=rsa; p=KEY"]])}), {},
                 id="txt-split-differently-is-the-same"),
    pytest.param([*WANTED, record("20261126._domainkey.example.test.", "TXT", 300, ["v=DKIM1; p=NEW"])], LIVE,
                 {"add": [("20261126._domainkey.example.test.", "TXT", 300, [["v=DKIM1; p=NEW"]], None)]},
                 id="add-selector"),
    pytest.param([MX, SPF, DKIM, record("_dmarc.example.test.", "TXT", 300, ["v=DMARC1; p=none"]), MX1], LIVE,
                 {"change": [("_dmarc.example.test.", "TXT", 300, [["v=DMARC1; p=none"]],
                              {"ttl": 300, "values": [["v=DMARC1; p=reject"]]})]},
                 id="change-value"),
    pytest.param([MX, SPF, DKIM, {**DMARC, "ttl": 3600}, MX1], LIVE,
                 {"change": [("_dmarc.example.test.", "TXT", 3600, [["v=DMARC1; p=reject"]],
                              {"ttl": 300, "values": [["v=DMARC1; p=reject"]]})]},
                 id="change-ttl"),
    pytest.param(WANTED, live_with({("20200101._domainkey", "TXT"): (300, [["v=DKIM1; p=OLD"]])}),
                 {"remove": [("20200101._domainkey.example.test.", "TXT", 300, [["v=DKIM1; p=OLD"]], None)]},
                 id="remove-retired-selector"),
    pytest.param(WANTED, live_with({("selector1._domainkey", "TXT"): (300, [["v=DKIM1; p=MS"]])}), {},
                 id="keep-foreign-selectors"),
    pytest.param([MX, record(D, "TXT", 300, ["v=spf1 mx a -all"]), DKIM, DMARC, MX1], LIVE,
                 {"change": [(D, "TXT", 300, [["v=spf1 mx a -all"]], {"ttl": 300, "values": [["v=spf1 mx -all"]]})]},
                 id="change-spf-keeps-user-apex-txt"),
    pytest.param(WANTED, live_with({("@", "TXT"): (300, [["google-site-verification=abc"]])}),
                 {"add": [(D, "TXT", 300, [["v=spf1 mx -all"]], None)]}, id="add-spf-beside-user-apex-txt"),
    pytest.param([MX, DKIM, DMARC, MX1], LIVE,
                 {"remove": [(D, "TXT", 300, [["v=spf1 mx -all"]], None)]}, id="remove-spf-only"),
    pytest.param(WANTED, live_with({("@", "MX"): (300, ["10 mx1.example.test.", "20 mx2.example.test."]),
                                   ("mx2", "A"): (300, ["192.0.2.20"])}),
                 {"change": [(D, "MX", 300, ["10 mx1.example.test."],
                              {"ttl": 300, "values": ["10 mx1.example.test.", "20 mx2.example.test."]})]},
                 id="mx-host-removed-its-address-kept"),
    pytest.param(WANTED, live_with({("mx1", "AAAA"): (300, ["2001:db8::99"])}),
                 {"remove": [("mx1.example.test.", "AAAA", 300, ["2001:db8::99"], None)]},
                 id="stale-address-of-a-wanted-host"),
    pytest.param(WANTED, live_with({("_25._tcp.mx1", "TLSA"): (300, [TLSA_OLD]),
                                   ("_25._tcp.www", "TLSA"): (300, [TLSA_WWW])}),
                 {"remove": [("_25._tcp.mx1.example.test.", "TLSA", 300, [TLSA_OLD], None)]},
                 id="stale-tlsa-of-an-mx-host"),
    pytest.param([*WANTED, record("_25._tcp.mx1.example.test.", "TLSA", 300, TLSA_OLD, TLSA_WWW)],
                 live_with({("_25._tcp.mx1", "TLSA"): (300, [TLSA_OLD])}),
                 {"change": [("_25._tcp.mx1.example.test.", "TLSA", 300, [TLSA_OLD, TLSA_WWW],
                              {"ttl": 300, "values": [TLSA_OLD]})]},
                 id="next-certificate-beside-the-current"),
    pytest.param(WANTED, live_with({("mx1", "CAA"): (300, [CAA_LE]), ("mta-sts", "CAA"): (300, [CAA_LE]),
                                   ("@", "CAA"): (300, ['0 issue "pki.goog"']), ("www", "CAA"): (300, [CAA_LE])}),
                 {"remove": [("mta-sts.example.test.", "CAA", 300, [CAA_LE], None),
                             ("mx1.example.test.", "CAA", 300, [CAA_LE], None)]},
                 id="caa-of-the-mail-names-only"),
    pytest.param([*WANTED, record("mx1.example.test.", "CAA", 300, CAA_LE)],
                 live_with({("mx1", "CAA"): (300, ['0 issue "pki.goog"', '0 iodef "mailto:ca@example.test"'])}),
                 {"change": [("mx1.example.test.", "CAA", 300, [CAA_LE],
                              {"ttl": 300, "values": ['0 issue "pki.goog"', '0 iodef "mailto:ca@example.test"']})]},
                 id="caa-of-an-mx-host-owned-whole"),
    pytest.param(WANTED, live_with({("_mta-sts", "TXT"): (300, [["v=STSv1; id=1"]]), ("mta-sts", "A"): (300, ["192.0.2.10"]),
                                   ("_submission._tcp", "SRV"): (300, ["0 1 587 mx1.example.test."])}),
                 {"remove": [("_mta-sts.example.test.", "TXT", 300, [["v=STSv1; id=1"]], None),
                             ("_submission._tcp.example.test.", "SRV", 300, ["0 1 587 mx1.example.test."], None),
                             ("mta-sts.example.test.", "A", 300, ["192.0.2.10"], None)]},
                 id="names-no-longer-wanted"),
    pytest.param([*WANTED, record("s1._domainkey.example.test.", "TXT", 300, ["v=DKIM1; p=MINE"])], LIVE,
                 {"change": [("s1._domainkey.example.test.", "TXT", 300, [["v=DKIM1; p=MINE"]],
                              {"ttl": 300, "values": [["v=DKIM1; p=S1"]]})]},
                 id="a-wanted-rrset-is-owned-whole"),
    pytest.param([*WANTED, *rec.address_records("mta-sts.example.test", ["192.0.2.10", "192.0.2.11"], 300)], LIVE,
                 {"add": [("mta-sts.example.test.", "A", 300, ["192.0.2.10", "192.0.2.11"], None)]},
                 id="records-of-one-rrset-merge"),
])
def test_plan(wanted, live, expected):
    changes = pub.plan(wanted, live, [D])
    assert summary(changes) == expected
    assert changes.changed is bool(expected)


def test_plan_of_equal_records_is_empty_with_an_empty_diff():
    changes = pub.plan(WANTED, LIVE, [D])
    assert not changes.changed
    assert changes.diff() == {"before": "", "after": ""}


def test_diff_lists_only_the_changed_records():
    live = live_with({("20200101._domainkey", "TXT"): (300, [["v=DKIM1; p=OLD"]])})
    wanted = [MX, SPF, DKIM, record("_dmarc.example.test.", "TXT", 300, ["v=DMARC1; p=none"]), MX1,
              record("_mta-sts.example.test.", "TXT", 300, ["v=STSv1; id=2"])]
    assert pub.plan(wanted, live, [D]).diff() == {
        "before": '_dmarc.example.test.\t300\tIN\tTXT\t"v=DMARC1; p=reject"\n'
                  '20200101._domainkey.example.test.\t300\tIN\tTXT\t"v=DKIM1; p=OLD"\n',
        "after": '_mta-sts.example.test.\t300\tIN\tTXT\t"v=STSv1; id=2"\n'
                 '_dmarc.example.test.\t300\tIN\tTXT\t"v=DMARC1; p=none"\n',
    }


@pytest.mark.parametrize("wanted, problem", [
    ([MX, {**MX, "ttl": 600}], "example.test. MX is wanted with two TTLs, 300 and 600"),
    ([{**MX, "ttl": "300"}], "example.test. MX: TTL '300' is not a number of seconds"),
    ([record(D, "MX", 300, "mx1.example.test.")], "example.test. MX 'mx1.example.test.' is not a valid record"),
    ([record(D, "TXT", 300, ["x" * 256])], "example.test. TXT"),
])
def test_plan_refuses_bad_records(wanted, problem):
    assert problem in failure(pub.plan, wanted, LIVE, [D])


@pytest.mark.parametrize("change, deletions, additions", [
    pytest.param({"ttl": 300, "values": ["10 mx1.example.test.", "30 mx3.example.test."],
                  "before": {"ttl": 300, "values": ["10 mx1.example.test.", "20 mx2.example.test."]}},
                 ["20 mx2.example.test."], [(300, "30 mx3.example.test.")], id="value-change-touches-only-the-changed"),
    pytest.param({"ttl": 600, "values": ["10 mx1.example.test.", "30 mx3.example.test."],
                  "before": {"ttl": 300, "values": ["10 mx1.example.test.", "20 mx2.example.test."]}},
                 ["10 mx1.example.test.", "20 mx2.example.test."],
                 [(600, "10 mx1.example.test."), (600, "30 mx3.example.test.")], id="ttl-change-replaces-all"),
])
def test_updates_of_a_change(change, deletions, additions):
    changes = pub.Plan(change=[{"name": D, "type": "MX", **change}])
    assert pub.updates(changes) == ([(D, "MX", value) for value in deletions],
                                    [(D, ttl, "MX", value) for ttl, value in additions])


def test_updates_delete_the_live_spelling_of_a_txt_record():
    changes = pub.Plan(change=[{"name": D, "type": "TXT", "ttl": 600, "values": [["v=spf1 -all"]],
                                "before": {"ttl": 300, "values": [["v=spf1", " -all"]]}}])
    assert pub.updates(changes) == ([(D, "TXT", ["v=spf1", " -all"])], [(D, 600, "TXT", ["v=spf1 -all"])])


# --- Against a real BIND (tests/unit/named_server.py)


def mail_records(zone: str, ttl: int = 300, mode: str = "enforce") -> list[dict]:
    """What the collection publishes for one mail domain with one MX host of its own."""
    mx = {"hostname": f"mx1.{zone}", "priority": 10, "addresses": ["192.0.2.10", "2001:db8::10"]}
    domain = {"name": zone, "mta_sts": {"mode": mode}, "tlsrpt_rua": [f"tls@{zone}"]}
    keys = [{"selector": "20261125", "key_type": "rsa", "public_key": KEY},
            {"selector": "20261125-ed25519", "key_type": "ed25519",
             "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}]
    return rec.domain_records(domain, [mx], keys, ttl) + rec.address_records(mx["hostname"], mx["addresses"], ttl)


def publish(zone: str, server: str, wanted: list[dict]) -> pub.Plan:
    key = pub.tsig_key("mail-update", "hmac-sha256", SECRET)
    changes = pub.plan(wanted, pub.read_zone(zone, server, key, timeout=2), [zone])
    pub.apply(zone, server, key, changes, timeout=2)
    return changes


def settled(zone: str, server: str, wanted: list[dict]) -> dict:
    """The live zone after publishing, checked to plan nothing more (idempotence)."""
    live = pub.read_zone(zone, server, pub.tsig_key("mail-update", "hmac-sha256", SECRET), timeout=2)
    assert not pub.plan(wanted, live, [zone]).changed
    return live


def test_first_publish_changes_only_what_the_collection_owns(named):
    wanted = mail_records("example.test")
    changes = publish("example.test", named, wanted)
    assert {what: [(r["name"], r["type"]) for r in getattr(changes, what)] for what in ("add", "change", "remove")} == {
        "add": [("20261125-ed25519._domainkey.example.test.", "TXT"), ("20261125._domainkey.example.test.", "TXT"),
                ("_dmarc.example.test.", "TXT"), ("_imap._tcp.example.test.", "SRV"), ("_imaps._tcp.example.test.", "SRV"),
                ("_mta-sts.example.test.", "TXT"), ("_smtp._tls.example.test.", "TXT"),
                ("_submission._tcp.example.test.", "SRV"), ("_submissions._tcp.example.test.", "SRV"),
                ("mta-sts.example.test.", "A"), ("mta-sts.example.test.", "AAAA"), ("mx1.example.test.", "AAAA")],
        "change": [("example.test.", "TXT")],
        "remove": [("20200101._domainkey.example.test.", "TXT")],
    }
    live = settled("example.test", named, wanted)
    assert sorted(live[("example.test.", "TXT")]["values"]) == [["google-site-verification=abc"], ["v=spf1 mx -all"]]
    assert live[("google._domainkey.example.test.", "TXT")]["values"] == [["v=DKIM1; k=rsa; p=GOOGLE"]]
    assert ("20200101._domainkey.example.test.", "TXT") not in live
    assert live[("20261125._domainkey.example.test.", "TXT")]["values"] == [rec.split_txt(rec.dkim_txt_value("rsa", KEY))]
    assert live[("mx1.example.test.", "A")] == {"ttl": 300, "values": ["192.0.2.10"]}
    assert live[("mx1.example.test.", "AAAA")] == {"ttl": 300, "values": ["2001:db8::10"]}
    assert not publish("example.test", named, wanted).changed


def test_changed_mta_sts_policy_changes_its_id_only(named):
    publish("change.test", named, mail_records("change.test"))
    wanted = mail_records("change.test", mode="testing")
    changes = publish("change.test", named, wanted)
    assert [(r["name"], r["type"]) for r in changes.change] == [("_mta-sts.change.test.", "TXT")]
    assert not changes.add and not changes.remove
    live = settled("change.test", named, wanted)
    assert live[("_mta-sts.change.test.", "TXT")]["values"] == changes.change[0]["values"]


def test_ttl_change_reaches_the_whole_rrset(named):
    publish("ttl.test", named, mail_records("ttl.test"))
    wanted = mail_records("ttl.test", ttl=600)
    changes = publish("ttl.test", named, wanted)
    assert len(changes.change) == len(pub.plan(wanted, {}, ["ttl.test"]).add) and not changes.add
    live = settled("ttl.test", named, wanted)
    # BIND keeps one TTL per rrset: the user's TXT record beside the SPF record takes its TTL.
    assert live[("ttl.test.", "TXT")]["ttl"] == 600
    assert sorted(live[("ttl.test.", "TXT")]["values"]) == [["google-site-verification=abc"], ["v=spf1 mx -all"]]
    assert live[("google._domainkey.ttl.test.", "TXT")]["ttl"] == 300


@pytest.mark.parametrize("key_name, secret, algorithm", [
    ("mail-update", WRONG, "hmac-sha256"),
    ("mail-update", SECRET, "hmac-sha512"),
    ("other", WRONG, "hmac-sha256"),
    ("unknown", SECRET, "hmac-sha256"),
], ids=["wrong-secret", "wrong-algorithm", "other-name-wrong-secret", "unknown-name"])
def test_wrong_key_is_refused(named, key_name, secret, algorithm):
    key = pub.tsig_key(key_name, algorithm, secret)
    refused = (f"{named} refused the TSIG key {key_name} for example.test (wrong name, algorithm or secret, or the "
               "key may not update this zone)")
    assert failure(pub.read_zone, "example.test", named, key, 2) == refused
    changes = pub.Plan(add=[record("_dmarc.example.test.", "TXT", 300, ["v=DMARC1; p=none"])])
    assert failure(pub.apply, "example.test", named, key, changes, 2) == refused


def test_key_without_grant_is_refused(named):
    key = pub.tsig_key("other", "hmac-sha256", OTHER)
    assert failure(pub.read_zone, "example.test", named, key, 2) == (
        f'{named} refused a zone transfer of example.test to key other: allow it (BIND: allow-transfer '
        '{ key "other"; };)')
    changes = pub.Plan(add=[record("_dmarc.example.test.", "TXT", 300, ["v=DMARC1; p=none"])])
    assert failure(pub.apply, "example.test", named, key, changes, 2).startswith(
        f"{named} refused the update of example.test (update-policy / allow-update does not grant key other")


def test_zone_without_updates_is_refused(named):
    key = pub.tsig_key("mail-update", "hmac-sha256", SECRET)
    live = pub.read_zone("locked.test", named, key, timeout=2)
    changes = pub.plan(mail_records("locked.test"), live, ["locked.test"])
    assert failure(pub.apply, "locked.test", named, key, changes, 2).startswith(
        f"{named} refused the update of locked.test (update-policy / allow-update does not grant key mail-update")
    assert pub.read_zone("locked.test", named, key, timeout=2) == live


def test_zone_not_served(named):
    key = pub.tsig_key("mail-update", "hmac-sha256", SECRET)
    not_served = f"nothere.test is not served by {named} (no authoritative SOA)"
    assert failure(pub.read_zone, "nothere.test", named, key, 2) == not_served
    changes = pub.Plan(add=[record("_dmarc.nothere.test.", "TXT", 300, ["v=DMARC1; p=none"])])
    assert failure(pub.apply, "nothere.test", named, key, changes, 2) == not_served


def test_name_outside_the_zone_is_refused_before_sending():
    changes = pub.Plan(add=[record("_dmarc.example.org.", "TXT", 300, ["v=DMARC1; p=none"])])
    key = pub.tsig_key("mail-update", "hmac-sha256", SECRET)
    assert failure(pub.apply, "example.test", f"127.0.0.1#{free_port()}", key, changes, 2) == \
        "_dmarc.example.org. is not in zone example.test"


def test_server_that_does_not_answer():
    key = pub.tsig_key("mail-update", "hmac-sha256", SECRET)
    server = f"127.0.0.1#{free_port()}"
    assert failure(pub.read_zone, "example.test", server, key, 2) == f"{server} did not answer for example.test (SOA)"


def test_empty_plan_sends_nothing():
    pub.apply("example.test", f"127.0.0.1#{free_port()}", pub.tsig_key("mail-update", "hmac-sha256", SECRET),
              pub.Plan(), 2)
