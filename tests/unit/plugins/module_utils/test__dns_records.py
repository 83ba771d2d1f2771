"""Unit tests of the DNS record builders."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess

import dns.rdatatype
import dns.zone
import pytest
from certificates import certificate, new_key, private_key_pem
from ansible_collections.opendove.mailserver.plugins.module_utils import _dns_records as rec
from ansible_collections.opendove.mailserver.plugins.module_utils import _mta_sts

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "A" * 348 + "IDAQAB"
MX = [{"hostname": "mx2.example.test", "priority": 20}, {"hostname": "mx1.example.test", "priority": 10}]


@pytest.mark.parametrize("length, pieces", [(0, [0]), (1, [1]), (255, [255]), (256, [255, 1]), (600, [255, 255, 90])])
def test_split_txt_makes_strings_of_at_most_255(length, pieces):
    value = "x" * length
    split = rec.split_txt(value)
    assert [len(s) for s in split] == pieces
    assert "".join(split) == value


def test_split_txt_refuses_non_ascii():
    with pytest.raises(rec.DnsRecordError):
        rec.split_txt("café")


@pytest.mark.parametrize("selector", ["20261125", "s1", "mail-2026", "a" * 63])
def test_valid_selectors(selector):
    assert rec.check_selector(selector) == selector


@pytest.mark.parametrize("selector", ["", "Sel", "s_1", "-s", "s-", "a.b", "a" * 64, 2026])
def test_invalid_selectors_are_refused(selector):
    with pytest.raises(rec.DnsRecordError, match="DKIM selector"):
        rec.check_selector(selector)


def test_dkim_value_as_the_seed_publishes_it():
    assert rec.dkim_txt_value("rsa", "AAAB") == "v=DKIM1; k=rsa; h=sha256; t=s; p=AAAB"
    assert rec.dkim_txt_value("ed25519", "AAAB") == "v=DKIM1; k=ed25519; h=sha256; t=s; p=AAAB"
    with pytest.raises(rec.DnsRecordError):
        rec.dkim_txt_value("dsa", "AAAB")


@pytest.mark.parametrize("policy, lookups", [
    ("v=spf1 mx -all", 1),
    ("v=spf1 -all", 0),
    ("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all", 0),
    ("v=spf1 a mx a:mail.example.test mx/24 ptr exists:%{i}.x.example.test include:spf.example.net -all", 7),
    ("v=spf1 mx redirect=_spf.example.test", 2),
    ("v=spf1 mx exp=explain.example.test -all", 1),
    ("v=spf1 a:mail.example.test/24//64 mx:_mx.example.test exp=explain.%{d} -all", 2),
])
def test_spf_lookup_counting(policy, lookups):
    assert rec.spf_lookups(policy) == lookups


def test_spf_default_and_whitespace():
    assert rec.spf_value(None) == "v=spf1 mx -all"
    assert rec.spf_value("  v=spf1   mx  -all ") == "v=spf1 mx -all"


def test_spf_over_ten_lookups_is_refused():
    policy = "v=spf1 " + " ".join(f"include:s{i}.example.test" for i in range(10)) + " mx -all"
    with pytest.raises(rec.DnsRecordError, match="needs 11 DNS lookups"):
        rec.spf_value(policy)


@pytest.mark.parametrize("include, terms", [
    (None, []),
    ([], []),
    (["spf.relay.example"], ["include:spf.relay.example"]),
    (["_spf.google.com", "include:_spf.google.com"], ["include:_spf.google.com"]),
    (["include:sendgrid.net", "a", "a:out.relay.example", "mx:relay.example"],
     ["include:sendgrid.net", "a", "a:out.relay.example", "mx:relay.example"]),
    (["ip4:192.0.2.25", "ip4:198.51.100.0/24", "ip6:2001:db8:25::/48", "ip6:2001:db8::1"],
     ["ip4:192.0.2.25", "ip4:198.51.100.0/24", "ip6:2001:db8:25::/48", "ip6:2001:db8::1"]),
])
def test_spf_include_entries_become_terms_in_order_each_once(include, terms):
    assert rec.spf_include_terms(include) == terms


@pytest.mark.parametrize("include, message", [
    ("spf.relay.example", "must be a list"),
    ([42], "entry 0: 42 is a int, not a string"),
    (["ok.example", "Relay.Example"], "entry 1: 'Relay.Example' is not a domain (include:<domain>)"),
    (["relay"], "it is a single label, not a fully qualified name"),
    (["relay.example."], "it ends with a dot: write 'relay.example'"),
    (["192.0.2.25"], "'192.0.2.25' is an IPv4 address; write ip4:192.0.2.25"),
    (["2001:db8::/32"], "'2001:db8::/32' is an IPv6 address; write ip6:2001:db8::/32"),
    (["-all"], "is not allowed: the policy already has mx and -all"),
    (["~include:relay.example"], "without a qualifier"),
    (["mx"], "already has mx"),
    (["exists:%{i}.relay.example"], "is not a domain (include:<domain>), include:<domain>, a, a:<domain>"),
    (["redirect=relay.example"], "is not a domain (include:<domain>)"),
    (["ptr"], "it is a single label"),
    (["include:"], "'include:': '' is not a domain name: it is empty"),
    (["include"], "it is a single label"),
    (["a:relay"], "'a:relay': 'relay' is not a domain name: it is a single label"),
    (["a:Relay.example"], "'Relay.example' is not a domain name: it has upper-case letters: write 'relay.example'"),
    (["include:spf..relay.example"], "it has an empty label"),
    (["ip4:300.0.0.1"], "'300.0.0.1' is not an IPv4 address or network"),
    (["ip4:192.0.2.0/33"], "is not an IPv4 address or network"),
    (["ip4:2001:db8::1"], "is an IPv6 address; write ip6:2001:db8::1"),
    (["ip6:192.0.2.1"], "is an IPv4 address; write ip4:192.0.2.1"),
    (["include:relay.example -all"], "is not a domain"),
])
def test_bad_spf_include_entry_is_named(include, message):
    with pytest.raises(rec.DnsRecordError) as caught:
        rec.spf_include_terms(include)
    assert message in str(caught.value)


def test_default_spf_names_the_included_terms_between_mx_and_all():
    assert rec.default_spf([]) == rec.DEFAULT_SPF == "v=spf1 mx -all"
    assert rec.spf_value(None, ["include:spf.relay.example", "ip4:192.0.2.25"]) == \
        "v=spf1 mx include:spf.relay.example ip4:192.0.2.25 -all"
    # A domain's own spf is published as it is.
    assert rec.spf_value("v=spf1 a -all", ["include:spf.relay.example"]) == "v=spf1 a -all"


def test_site_records_publish_the_default_spf_with_mail_spf_include_and_own_spf_unchanged():
    domains = [{"name": "example.test"}, {"name": "own.test", "spf": "v=spf1 mx ~all"}]
    hosts = [{"hostname": "mx1.example.test", "priority": 10, "addresses": ["192.0.2.10"]}]
    result = rec.site_records(domains, hosts, [], spf_include=["spf.relay.example"])
    spf = {name: [r["values"] for r in records if r["type"] == "TXT" and r["name"] == f"{name}."]
           for name, records in result["domains"].items()}
    assert spf == {"example.test": [[["v=spf1 mx include:spf.relay.example -all"]]],
                   "own.test": [[["v=spf1 mx ~all"]]]}
    with pytest.raises(rec.DnsRecordError, match="^mail_spf_include: entry 0: 'a:'"):
        rec.site_records(domains, hosts, [], spf_include=["a:"])


def test_spf_include_counts_toward_the_top_level_lookup_limit():
    include = [f"include:s{i}.example.test" for i in range(10)]
    with pytest.raises(rec.DnsRecordError, match="needs 11 DNS lookups"):
        rec.spf_value(None, rec.spf_include_terms(include))


RELAY = {"host": "smtp.relay.example", "port": 587}


@pytest.mark.parametrize("domain, include", [
    ({"name": "example.test"}, []),
    ({"name": "example.test", "spf": "v=spf1 a mx -all"}, ["include:spf.relay.example"]),
    ({"name": "example.test", "spf": "v=spf1 mx:example.test a:mx1.example.test -all"}, []),
    ({"name": "example.test", "spf": "v=spf1 mx -ip4:192.0.2.0/24 ?include:spf.relay.example -all"}, []),
    ({"name": "example.test", "spf": "v=spf1 mx -all exp=explain.example.test"}, []),
])
def test_relayhost_with_an_spf_that_fails_relayed_mail_is_refused_with_the_fix(domain, include):
    problems = rec.relayhost_spf_problems([domain], include, RELAY, ["mx1.example.test"])
    assert len(problems) == 1
    assert problems[0].startswith("example.test: mail leaves through the smarthost smtp.relay.example")
    assert "ends in -all" in problems[0]
    if "spf" in domain:
        assert "Add to the spf of example.test" in problems[0]
    else:
        assert "Set mail_spf_include to" in problems[0] and "or give example.test its own spf" in problems[0]


@pytest.mark.parametrize("domain, include, relayhost", [
    ({"name": "example.test"}, ["include:spf.relay.example"], RELAY),
    ({"name": "example.test"}, ["ip4:198.51.100.0/24"], RELAY),
    ({"name": "example.test"}, ["a:smtp.relay.example"], RELAY),
    ({"name": "example.test"}, ["mx:relay.example"], RELAY),
    ({"name": "example.test", "spf": "v=spf1 mx ~all"}, [], RELAY),
    ({"name": "example.test", "spf": "v=spf1 mx ?all"}, [], RELAY),
    ({"name": "example.test", "spf": "v=spf1 mx"}, [], RELAY),
    ({"name": "example.test", "spf": "v=spf1 mx redirect=_spf.example.test"}, [], RELAY),
    ({"name": "example.test", "spf": "v=spf1 mx ip6:2001:db8::/32 -all"}, [], RELAY),
    ({"name": "example.test"}, [], {}),
    ({"name": "example.test"}, [], None),
    ({"name": "example.test"}, [], ""),
])
def test_spf_that_authorises_more_than_the_site_or_no_relayhost_passes(domain, include, relayhost):
    assert rec.relayhost_spf_problems([domain], include, relayhost, ["mx1.example.test"]) == []


def test_relayhost_given_as_its_name_is_named_in_each_domains_problem():
    problems = rec.relayhost_spf_problems([{"name": "a.test"}, {"name": "b.test", "spf": "v=spf1 mx ~all"},
                                           {"name": "c.test"}], [], "smtp.relay.example")
    assert [p.split(":")[0] for p in problems] == ["a.test", "c.test"]
    assert all("smarthost smtp.relay.example" in p for p in problems)


@pytest.mark.parametrize("policy", ["spf1 mx -all", "v=spf1 mxx -all", "v=spf1 include -all", "v=spf1 all:x",
                                    "v=spf1 ip4:300.1.1.1 -all", "v=spf1 ip4:2001:db8::1 -all", "v=spf1 foo=bar"])
def test_malformed_spf_is_refused(policy):
    with pytest.raises(rec.DnsRecordError):
        rec.spf_value(policy)


@pytest.mark.parametrize("policy, message", [
    ("v=spf1 include:spf..relay.example -all", "'spf..relay.example' is not a domain name: it has an empty label"),
    ("v=spf1 a: -all", "'' is not a domain name: it is empty"),
    ("v=spf1 mx:relay/24 -all", "'relay' is not a domain name: it is a single label"),
    ("v=spf1 exists:Relay.example -all", "it has upper-case letters: write 'relay.example'"),
    ("v=spf1 include:192.0.2.25 -all", "it ends with a numeric label (an IP address?)"),
    ("v=spf1 mx redirect=_spf.example.test.", "it ends with a dot: write '_spf.example.test'"),
    ("v=spf1 ip4:300.1.1.1 -all", "'300.1.1.1' is not an IPv4 address or network"),
    ("v=spf1 ip4:2001:db8::1 -all", "'2001:db8::1' is an IPv6 address; write ip6:2001:db8::1"),
])
def test_spf_policy_values_are_checked_as_mail_spf_include_entries_are(policy, message):
    with pytest.raises(rec.DnsRecordError) as caught:
        rec.spf_value(policy)
    assert str(caught.value).startswith(f"SPF policy {policy!r}: ") and message in str(caught.value)


def test_dmarc_defaults_are_the_seeds():
    assert rec.dmarc_value("example.test", None) == "v=DMARC1; p=reject; sp=reject; aspf=s; adkim=s; fo=1"


def test_dmarc_tags_in_order_with_reports():
    value = rec.dmarc_value("example.test", {"ruf": ["mailto:dmarc@example.test"], "rua": ["dmarc@example.test"],
                                             "pct": 50, "p": "quarantine"})
    assert value == ("v=DMARC1; p=quarantine; sp=reject; aspf=s; adkim=s; fo=1; pct=50; "
                     "rua=mailto:dmarc@example.test; ruf=mailto:dmarc@example.test")


def test_dmarc_null_omits_a_tag_and_empty_reports_are_omitted():
    assert rec.dmarc_value("example.test", {"sp": None, "fo": None, "aspf": None, "adkim": None, "rua": []}) == \
        "v=DMARC1; p=reject"


def test_dmarc_pct_only_when_set():
    assert "pct" not in rec.dmarc_value("example.test", {})


@pytest.mark.parametrize("settings, message", [
    ({"p": "block"}, "DMARC p='block' is invalid"),
    ({"p": None}, "DMARC p (the policy) is required"),
    ({"sp": "yes"}, "DMARC sp='yes' is invalid"),
    ({"aspf": "strict"}, "DMARC aspf='strict' is invalid"),
    ({"fo": "2"}, "DMARC fo='2' is invalid"),
    ({"fo": "1:1"}, "DMARC fo='1:1' is invalid"),
    ({"pct": 101}, "DMARC pct=101 is invalid"),
    ({"pct": True}, "DMARC pct=True is invalid"),
    ({"ri": 0}, "DMARC ri=0 is invalid"),
    ({"rf": "iodef"}, "DMARC rf='iodef' is invalid"),
    ({"rua": ["https://example.test"]}, "DMARC rua entry 'https://example.test' is not a mailto: address"),
    ({"rua": 5}, "DMARC rua must be a list"),
    ({"policy": "reject"}, "unknown DMARC tag 'policy'"),
])
def test_invalid_dmarc_is_refused_with_the_tag_named(settings, message):
    with pytest.raises(rec.DnsRecordError, match="example.test: " + message.replace("(", r"\(").replace(")", r"\)")):
        rec.dmarc_value("example.test", settings)


def test_tlsrpt_value():
    assert rec.tlsrpt_value("example.test", ["mailto:tls@example.test", "https://r.example.test/tls"]) == \
        "v=TLSRPTv1; rua=mailto:tls@example.test,https://r.example.test/tls"


def test_domain_reccover_every_kind_in_order():
    records = rec.domain_records(
        {"name": "example.test", "tlsrpt_rua": ["tls@example.test"]}, MX,
        [{"selector": "20261125", "key_type": "rsa", "public_key": KEY}], ttl=300)
    assert [(r["name"], r["type"]) for r in records] == [
        ("example.test.", "MX"), ("example.test.", "TXT"), ("20261125._domainkey.example.test.", "TXT"),
        ("_dmarc.example.test.", "TXT"), ("_smtp._tls.example.test.", "TXT"),
        ("_submissions._tcp.example.test.", "SRV"), ("_submission._tcp.example.test.", "SRV"),
        ("_imaps._tcp.example.test.", "SRV"), ("_imap._tcp.example.test.", "SRV")]
    assert records[0]["values"] == ["10 mx1.example.test.", "20 mx2.example.test."]
    dkim = records[2]["values"][0]
    assert len(dkim) == 2 and all(len(s) <= 255 for s in dkim)
    assert "".join(dkim) == f"v=DKIM1; k=rsa; h=sha256; t=s; p={KEY}"
    assert all(r["ttl"] == 300 for r in records)


@pytest.mark.parametrize("domain, value", [
    ({"name": "example.test"}, "v=TLSRPTv1; rua=mailto:postmaster@example.test"),
    ({"name": "example.test", "tlsrpt_rua": "https://r.example.test/tls"}, "v=TLSRPTv1; rua=https://r.example.test/tls"),
    ({"name": "example.test", "tlsrpt_rua": []}, None),
    ({"name": "example.test", "tlsrpt_rua": None}, None),
])
def test_tls_reports_go_to_postmaster_unless_set_or_turned_off(domain, value):
    records = [r for r in rec.domain_records(domain, MX, []) if r["name"] == "_smtp._tls.example.test."]
    assert [r["values"] for r in records] == ([[[value]]] if value else [])


def test_srv_records_point_clients_at_every_mx_host():
    records = {r["name"]: r["values"] for r in rec.domain_records({"name": "example.test"}, MX, []) if r["type"] == "SRV"}
    assert records == {
        "_submissions._tcp.example.test.": ["10 1 465 mx1.example.test.", "20 1 465 mx2.example.test."],
        "_submission._tcp.example.test.": ["10 1 587 mx1.example.test.", "20 1 587 mx2.example.test."],
        "_imaps._tcp.example.test.": ["10 1 993 mx1.example.test.", "20 1 993 mx2.example.test."],
        "_imap._tcp.example.test.": ["10 1 143 mx1.example.test.", "20 1 143 mx2.example.test."]}


def test_a_service_that_is_off_gets_the_dot_target():
    ports = {"submissions": 465, "submission": None, "imaps": 993, "imap": 0}
    records = {r["name"]: r["values"] for r in rec.srv_records("example.test", MX[:1], ports)}
    assert records["_submission._tcp.example.test."] == ["0 0 0 ."]
    assert records["_imap._tcp.example.test."] == ["0 0 0 ."]
    assert records["_imaps._tcp.example.test."] == [f"{MX[0]['priority']} 1 993 {MX[0]['hostname']}."]


@pytest.mark.parametrize("port", [65536, -1, True, "587"])
def test_srv_port_must_be_a_port(port):
    with pytest.raises(rec.DnsRecordError, match="submission port"):
        rec.srv_records("example.test", MX, {"submission": port})


def test_keys_of_several_hosts_are_all_published_once():
    keys = [{"selector": "20261125-mx2", "key_type": "rsa", "public_key": KEY},
            {"selector": "20261125-mx1", "key_type": "rsa", "public_key": KEY + "A"},
            {"selector": "20261125-mx2", "key_type": "rsa", "public_key": KEY}]
    names = [r["name"] for r in rec.domain_records({"name": "example.test"}, MX, keys)]
    assert [n for n in names if "_domainkey" in n] == ["20261125-mx1._domainkey.example.test.",
                                                       "20261125-mx2._domainkey.example.test."]


def test_one_selector_with_two_keys_is_refused():
    keys = [{"selector": "20261125", "key_type": "rsa", "public_key": KEY},
            {"selector": "20261125", "key_type": "rsa", "public_key": KEY + "A"}]
    with pytest.raises(rec.DnsRecordError, match="selector 20261125 is used by two different keys"):
        rec.domain_records({"name": "example.test"}, MX, keys)


def test_domain_without_mx_host_is_refused():
    with pytest.raises(rec.DnsRecordError, match="no MX host"):
        rec.domain_records({"name": "example.test"}, [], [])


def test_host_recgive_address_and_ptr():
    assert rec.host_records("mx1.example.test", ["192.0.2.10", "2001:db8::10"], ttl=60) == [
        {"name": "mx1.example.test.", "type": "A", "ttl": 60, "values": ["192.0.2.10"]},
        {"name": "10.2.0.192.in-addr.arpa.", "type": "PTR", "ttl": 60, "values": ["mx1.example.test."]},
        {"name": "mx1.example.test.", "type": "AAAA", "ttl": 60, "values": ["2001:db8::10"]},
        {"name": "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "type": "PTR",
         "ttl": 60, "values": ["mx1.example.test."]},
    ]


def test_zone_fragment_quotes_and_splits_txt():
    fragment = rec.zone_fragment([
        rec.txt_record("example.test", 'a "quoted" \\ value', 60),
        {"name": "example.test.", "type": "MX", "ttl": 60, "values": ["10 mx1.example.test."]},
    ])
    assert fragment == ('example.test.\t60\tIN\tTXT\t"a \\"quoted\\" \\\\ value"\n'
                        "example.test.\t60\tIN\tMX\t10 mx1.example.test.\n")


def test_zone_fragment_parses_as_a_zone_with_the_same_data():
    """dnspython reads the fragment back (after a SOA and NS, as a zone would include it)."""
    records = rec.domain_records({"name": "example.test", "tlsrpt_rua": ["tls@example.test"]}, MX,
                                 [{"selector": "s1", "key_type": "rsa", "public_key": KEY}])
    header = ("example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300\n"
              "example.test. 3600 IN NS ns1.example.test.\n")
    zone = dns.zone.from_text(header + rec.zone_fragment(records), origin="example.test.", relativize=False)
    dkim = zone.find_rdataset("s1._domainkey.example.test.", dns.rdatatype.TXT)[0]
    assert b"".join(dkim.strings).decode() == f"v=DKIM1; k=rsa; h=sha256; t=s; p={KEY}"
    mx = zone.find_rdataset("example.test.", dns.rdatatype.MX)
    exchanges = sorted((r.preference, r.exchange.to_text()) for r in mx)
    assert exchanges == [(10, "mx1.example.test."), (20, "mx2.example.test.")]


MX_WITH_ADDRESSES = [{"hostname": "mx1.example.test", "priority": 10, "addresses": ["192.0.2.10", "2001:db8::10"]},
                     {"hostname": "mx2.example.test", "priority": 20, "addresses": ["192.0.2.20"]}]


def test_mta_sts_records_carry_the_policy_id_and_every_mx_address():
    domain = {"name": "example.test", "mta_sts": {"mode": "enforce", "max_age": 604800}}
    records = rec.domain_records(domain, MX_WITH_ADDRESSES, [])
    policy = _mta_sts.policy_text(domain["mta_sts"], ["mx1.example.test", "mx2.example.test"])
    sts_txt = [r for r in records if r["name"] == "_mta-sts.example.test."]
    assert sts_txt == [{"name": "_mta-sts.example.test.", "type": "TXT", "ttl": 3600,
                        "values": [[f"v=STSv1; id={_mta_sts.policy_id(policy)}"]]}]
    hosts = [(r["type"], r["values"][0]) for r in records if r["name"] == "mta-sts.example.test."]
    assert hosts == [("A", "192.0.2.10"), ("A", "192.0.2.20"), ("AAAA", "2001:db8::10")]


def test_no_mta_sts_records_without_an_entry():
    records = rec.domain_records({"name": "example.test"}, MX_WITH_ADDRESSES, [])
    assert not [r for r in records if "mta-sts" in r["name"]]


def test_mta_sts_id_follows_the_policy_through_the_records():
    def sts_id(mode, mx_hosts):
        records = rec.domain_records({"name": "example.test", "mta_sts": {"mode": mode}}, mx_hosts, [])
        return next(r["values"][0][0] for r in records if r["name"].startswith("_mta-sts."))

    assert sts_id("enforce", MX_WITH_ADDRESSES) == sts_id("enforce", list(reversed(MX_WITH_ADDRESSES)))
    assert sts_id("enforce", MX_WITH_ADDRESSES) != sts_id("testing", MX_WITH_ADDRESSES)
    assert sts_id("enforce", MX_WITH_ADDRESSES) != sts_id("enforce", MX_WITH_ADDRESSES[:1])


def test_mta_sts_without_addresses_or_with_bad_settings_is_refused():
    with pytest.raises(rec.DnsRecordError, match="no address for mta-sts.example.test"):
        rec.domain_records({"name": "example.test", "mta_sts": {"mode": "enforce"}}, MX, [])
    with pytest.raises(rec.DnsRecordError, match="MTA-STS mode 'on'"):
        rec.domain_records({"name": "example.test", "mta_sts": {"mode": "on"}}, MX_WITH_ADDRESSES, [])
    assert rec.domain_policy_errors({"name": "example.test", "mta_sts": {"mode": "enforce", "max_age": 0.5}}) == [
        ("mta_sts", "max_age 0.5 is not a whole number of seconds from 0 to 31557600")]


def test_mta_sts_policy_may_list_other_mx_names_than_the_mx_record():
    domain = {"name": "example.test", "mta_sts": {"mode": "enforce"}}
    own = rec.domain_records(domain, MX_WITH_ADDRESSES, [])
    listed = rec.domain_records(domain, MX_WITH_ADDRESSES, [], policy_mx=["mx1.example.test", "mx2.example.test"])
    more = rec.domain_records(domain, MX_WITH_ADDRESSES, [], policy_mx=["mx1.example.test", "backup.example.test"])
    assert own == listed and own != more


def test_site_records_publish_every_hosts_made_keys_once_per_domain():
    rings = [{"example.test": {"publish": [{"selector": "s1", "key_type": "rsa", "public_key": "AB"},
                                           {"selector": "s3", "key_type": "rsa", "public_key": None}]}},
             {"example.test": {"publish": [{"selector": "s2", "key_type": "ed25519", "public_key": "CD"}]}}]
    mx = [{"hostname": "mx1.example.test", "priority": 10, "addresses": ["192.0.2.1"]},
          {"hostname": "mx2.example.test", "priority": 20, "addresses": ["192.0.2.2"]}]
    result = rec.site_records([{"name": "example.test"}, {"name": "example.org"}], mx, rings, 300)
    assert sorted(result["domains"]) == ["example.org", "example.test"]
    selectors = [r["name"] for r in result["domains"]["example.test"] if "_domainkey" in r["name"]]
    assert selectors == ["s1._domainkey.example.test.", "s2._domainkey.example.test."]
    assert not [r for r in result["domains"]["example.org"] if "_domainkey" in r["name"]]
    assert [(r["name"], r["type"]) for r in result["hosts"]] == [
        ("mx1.example.test.", "A"), ("1.2.0.192.in-addr.arpa.", "PTR"),
        ("mx2.example.test.", "A"), ("2.2.0.192.in-addr.arpa.", "PTR")]
    assert "2.2.0.192.in-addr.arpa.\t300\tIN\tPTR\tmx2.example.test.\n" in rec.zone_fragment(result["hosts"])
    assert result["withdrawn"] == {}


def test_site_records_withdraw_a_removed_domain_keeping_only_its_published_keys():
    mx = [{"hostname": "mx1.example.test", "priority": 10, "addresses": ["192.0.2.1"]}]
    removed = [{"gone.test": {"publish": [{"selector": "s1", "key_type": "rsa", "public_key": "AB"}]},
                "done.test": {"publish": []}},
               {"gone.test": {"publish": [{"selector": "s2", "key_type": "rsa", "public_key": None}]}}]
    result = rec.site_records([{"name": "example.test"}], mx, [], 300, removed_rings=removed)
    # done.test's keys are retired, its other records still withdrawn; s2 was never made: not published.
    assert list(result["withdrawn"]) == ["done.test", "gone.test"] and list(result["domains"]) == ["example.test"]
    assert result["withdrawn"]["done.test"] == []
    assert [(r["name"], r["type"]) for r in result["withdrawn"]["gone.test"]] == [("s1._domainkey.gone.test.", "TXT")]
    with pytest.raises(rec.DnsRecordError, match="example.test is a domain of the site, but a host has its key ring"):
        rec.site_records([{"name": "example.test"}], mx, [], removed_rings=[{"example.test": {"publish": []}}])


# --- TLSA (DANE, RFC 7672) and CAA (RFC 8659)


def _der_element(der: bytes, offset: int) -> tuple[int, int]:
    """(start of the contents, end) of the DER element at offset."""
    length, start = der[offset + 1], offset + 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(der[start:start + count], "big"), start + count
    return start, start + length


def spki_of(pem: str) -> bytes:
    """The SubjectPublicKeyInfo of the first certificate of pem, its bytes as they are in the certificate: the
    seventh element of tbsCertificate (RFC 5280 4.1), the sixth when the version is left out."""
    lines = pem.splitlines()
    body = lines[lines.index("-----BEGIN CERTIFICATE-----") + 1:lines.index("-----END CERTIFICATE-----")]
    der = base64.b64decode("".join(body))
    offset = _der_element(der, 0)[0]  # tbsCertificate, the first element of Certificate
    offset, tbs_end = _der_element(der, offset)
    elements = []
    while offset < tbs_end:
        end = _der_element(der, offset)[1]
        elements.append(der[offset:end])
        offset = end
    return elements[6 if elements[0][0] == 0xA0 else 5]


@pytest.mark.parametrize("kind", ["ec", "rsa", "ed25519"])
def test_tlsa_value_is_the_sha256_of_the_certificates_public_key_info(kind):
    pem = certificate("mx1.example.test", new_key(kind))
    assert rec.tlsa_value(pem) == "3 1 1 " + hashlib.sha256(spki_of(pem)).hexdigest()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_tlsa_value_is_what_openssl_computes():
    pem = certificate("mx1.example.test", new_key("rsa"))
    public_key = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=pem.encode(), capture_output=True,
                                check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=public_key, capture_output=True,
                         check=True).stdout
    assert rec.tlsa_value(pem) == "3 1 1 " + hashlib.sha256(der).hexdigest()


def test_tlsa_value_is_of_the_first_certificate_of_a_chain_and_skips_a_key_before_it():
    key = new_key()
    leaf, issuer = certificate("mx1.example.test", key), certificate("ca.example.test")
    expected = "3 1 1 " + hashlib.sha256(spki_of(leaf)).hexdigest()
    assert rec.tlsa_value(leaf + issuer) == expected
    assert rec.tlsa_value(private_key_pem(key) + leaf + issuer) == expected
    assert rec.tlsa_value(leaf + issuer) != rec.tlsa_value(issuer + leaf)


def test_tlsa_value_stays_when_a_renewal_keeps_the_key():
    key = new_key()
    assert rec.tlsa_value(certificate("mx1.example.test", key, days=90)) == \
        rec.tlsa_value(certificate("mx1.example.test", key, days=30))


def test_tlsa_records_of_the_current_and_the_next_certificate():
    current, following = certificate("mx1.example.test"), certificate("mx1.example.test")
    records = rec.tlsa_records("mx1.example.test", [current, following], ttl=300)
    assert records == [{"name": "_25._tcp.mx1.example.test.", "type": "TLSA", "ttl": 300,
                        "values": sorted([rec.tlsa_value(current), rec.tlsa_value(following)])}]
    assert rec.tlsa_records("mx1.example.test", [following, current], ttl=300) == records


def test_tlsa_records_of_two_certificates_with_one_key_are_one():
    key = new_key()
    records = rec.tlsa_records("mx1.example.test", [certificate("mx1.example.test", key),
                                                    certificate("mx1.example.test", key, days=30)])
    assert [r["values"] for r in records] == [[rec.tlsa_value(certificate("mx1.example.test", key))]]


def test_no_certificate_no_tlsa_record():
    assert rec.tlsa_records("mx1.example.test", []) == []
    mx = [dict(MX_WITH_ADDRESSES[0], certificates=[]), MX_WITH_ADDRESSES[1]]
    result = rec.site_records([{"name": "example.test"}], mx, [])
    assert not [r for r in result["hosts"] if r["type"] == "TLSA"]


@pytest.mark.parametrize("pem, problem", [
    ("", "is not a PEM certificate"),
    ("junk", "is not a PEM certificate"),
    ("-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHBfpegPjMCMA0GCSqGSIb3DQEBCwUAMBExDzANBgNVBAMMBnVu\n"
     "-----END CERTIFICATE-----\n", "is not a PEM certificate"),
    (private_key_pem(new_key()), "is not a PEM certificate"),
    (b"-----BEGIN CERTIFICATE-----", "is a bytes, not PEM text"),
], ids=["empty", "junk", "truncated", "private-key", "bytes"])
def test_a_certificate_that_does_not_parse_is_refused_with_the_host_named(pem, problem):
    with pytest.raises(rec.DnsRecordError, match=f"^mx2.example.test: certificates\\[1\\] {problem}"):
        rec.tlsa_records("mx2.example.test", [certificate("mx2.example.test"), pem])
    mx = [dict(MX_WITH_ADDRESSES[1], certificates=[certificate("mx2.example.test"), pem])]
    with pytest.raises(rec.DnsRecordError, match="^mx2.example.test: certificates"):
        rec.site_records([{"name": "example.test"}], mx, [])


def test_certificates_must_be_a_list():
    with pytest.raises(rec.DnsRecordError, match="mx1.example.test: certificates must be a list of PEM texts"):
        rec.tlsa_records("mx1.example.test", certificate("mx1.example.test"))


def test_caa_records_let_only_the_issuers_issue():
    assert rec.caa_records("mx1.example.test", ["letsencrypt.org", "buypass.com", "letsencrypt.org"], 300) == [
        {"name": "mx1.example.test.", "type": "CAA", "ttl": 300,
         "values": ['0 issue "buypass.com"', '0 issue "letsencrypt.org"']}]
    assert rec.caa_records("mx1.example.test", []) == []


@pytest.mark.parametrize("issuers, problem", [
    (["Let's Encrypt"], "CAA issuer \"Let's Encrypt\" is not a CA's domain name"),
    (["LetsEncrypt.org"], "CAA issuer 'LetsEncrypt.org' is not a CA's domain name: it has upper-case letters: "
                          "write 'letsencrypt.org'"),
    (["letsencrypt.org."], "CAA issuer 'letsencrypt.org.' is not a CA's domain name: it ends with a dot"),
    (["https://letsencrypt.org"], "CAA issuer 'https://letsencrypt.org' is not a CA's domain name: it has a scheme"),
    (["org"], "CAA issuer 'org' is not a CA's domain name: it is a single label"),
    (["letsencrypt.org", 5], "CAA issuer 5 is not a CA's domain name"),
    ("letsencrypt.org", "CAA issuers 'letsencrypt.org' must be a list of CA domain names"),
])
def test_caa_issuers_must_be_domain_names(issuers, problem):
    with pytest.raises(rec.DnsRecordError) as caught:
        rec.site_records([{"name": "example.test"}], MX_WITH_ADDRESSES, [], caa_issuers=issuers)
    assert str(caught.value).startswith(problem)


def test_caa_records_are_at_the_mx_hosts_and_mta_sts_names_only():
    domains = [{"name": "example.test", "mta_sts": {"mode": "enforce"}}, {"name": "example.org"}]
    result = rec.site_records(domains, MX_WITH_ADDRESSES, [], caa_issuers=["letsencrypt.org"])
    caa = [(r["name"], r["values"]) for records in [*result["domains"].values(), result["hosts"]] for r in records
           if r["type"] == "CAA"]
    assert caa == [("mta-sts.example.test.", ['0 issue "letsencrypt.org"']),
                   ("mx1.example.test.", ['0 issue "letsencrypt.org"']),
                   ("mx2.example.test.", ['0 issue "letsencrypt.org"'])]
    assert not [r for r in rec.site_records(domains, MX_WITH_ADDRESSES, [])["hosts"] if r["type"] == "CAA"]


def test_no_caa_record_at_an_mx_host_named_as_a_mail_domain():
    mx = [{"hostname": "example.org", "priority": 10, "addresses": ["192.0.2.10"]}]
    result = rec.site_records([{"name": "example.test"}, {"name": "example.org"}], mx, [],
                              caa_issuers=["letsencrypt.org"])
    assert not [r for records in [*result["domains"].values(), result["hosts"]] for r in records
                if r["type"] == "CAA"]


def test_host_records_end_with_tlsa_and_caa_and_parse_as_a_zone():
    pem = certificate("mx1.example.test")
    records = rec.host_records("mx1.example.test", ["192.0.2.10"], 300, [pem], ["letsencrypt.org"])
    assert [(r["name"], r["type"]) for r in records] == [
        ("mx1.example.test.", "A"), ("10.2.0.192.in-addr.arpa.", "PTR"), ("_25._tcp.mx1.example.test.", "TLSA"),
        ("mx1.example.test.", "CAA")]
    header = ("example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300\n"
              "example.test. 3600 IN NS ns1.example.test.\n")
    zone = dns.zone.from_text(header + rec.zone_fragment(records[2:]), origin="example.test.", relativize=False)
    tlsa = zone.find_rdataset("_25._tcp.mx1.example.test.", dns.rdatatype.TLSA)[0]
    assert (tlsa.usage, tlsa.selector, tlsa.mtype, tlsa.cert) == (3, 1, 1, hashlib.sha256(spki_of(pem)).digest())
    caa = zone.find_rdataset("mx1.example.test.", dns.rdatatype.CAA)[0]
    assert (caa.flags, caa.tag, caa.value) == (0, b"issue", b"letsencrypt.org")


def test_relayhost_problem_quotes_only_the_smarthosts_name():
    relayhost = {"host": "smtp.relay.example", "username": "mx1", "password": "pa ss:word"}
    problems = rec.relayhost_spf_problems([{"name": "example.test"}], [], relayhost)
    assert len(problems) == 1 and "smarthost smtp.relay.example" in problems[0] and "pa ss:word" not in problems[0]
    assert "smarthost (its host not given)" in rec.relayhost_spf_problems([{"name": "example.test"}], [],
                                                                          {"password": "pa ss:word"})[0]
