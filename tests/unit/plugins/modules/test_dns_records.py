"""The dns_records module as playbooks run it: records computed from the site, published to a real BIND
(tests/unit/named_server.py) by signed dynamic update, check mode predicting the run, secrets never shown; TLSA
records through a certificate change, CAA records at the mail names only."""

from __future__ import annotations

import ad_hoc
import dns.query
import dns.rcode
import dns.update
import pytest
from certificates import certificate
from ansible_collections.opendove.mailserver.plugins.module_utils import _dns_publish as pub
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import tlsa_value
from named_server import SECRET, SECRETS, WRONG, free_port

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "A" * 348 + "IDAQAB"
MX = [{"hostname": "mx1.site.test", "priority": 10, "addresses": ["192.0.2.10"]}]
RINGS = [{"site.test": {"publish": [{"selector": "20261125", "key_type": "rsa", "public_key": KEY},
                                    {"selector": "20261201", "key_type": "rsa", "public_key": None}]}}]
DOMAINS = [{"name": "site.test", "mta_sts": {"mode": "testing"}}, {"name": "unhosted.test"}]


def args(**extra) -> dict:
    return {"domains": DOMAINS, "mx_hosts": MX, "dkim_rings": RINGS, "ttl": 300, "timeout": 2, **extra}


def publisher(server: str, zone: str = "site.test", **extra) -> dict:
    return {"zone": zone, "server": server, "key_name": "mail-update", "key_secret": SECRET, **extra}


def run(arguments: dict, check: bool = False) -> dict:
    result, output = ad_hoc.run_module("dns_records", arguments, check=check)
    assert not any(secret in output for secret in SECRETS), "a TSIG secret is in the output"
    return result


def live(server: str, zone: str) -> dict:
    return pub.read_zone(zone, server, pub.tsig_key("mail-update", "hmac-sha256", SECRET), timeout=2)


def dns_update(zone: str, server: str, additions: list[tuple[str, str, str]]) -> None:
    """Records added by someone else (an operator, another mail service) with the same key."""
    update = dns.update.UpdateMessage(zone, keyring=pub.tsig_key("mail-update", "hmac-sha256", SECRET))
    for name, rdtype, value in additions:
        update.add(name, 300, rdtype, value)
    address, port = pub.parse_server(server)
    assert dns.query.tcp(update, address, port=port, timeout=5).rcode() == dns.rcode.NOERROR


def test_without_publishers_every_record_is_returned_and_nothing_asked():
    result = run(args())
    assert result["changed"] is False and result["zones"] == {}
    names = {(r["name"], r["type"]) for r in result["domains"]["site.test"]["records"]}
    assert {("site.test.", "MX"), ("20261125._domainkey.site.test.", "TXT"), ("_submission._tcp.site.test.", "SRV"),
            ("_smtp._tls.site.test.", "TXT"), ("_mta-sts.site.test.", "TXT")} <= names
    # A key check mode predicts (no public key yet) is not published.
    assert not any("20261201" in r["name"] for r in result["domains"]["site.test"]["records"])
    assert "_imaps._tcp.site.test.\t300\tIN\tSRV\t10 1 993 mx1.site.test.\n" in result["domains"]["site.test"]["zone"]
    assert ("10.2.0.192.in-addr.arpa. PTR") in result["unpublished"]
    assert len(result["unpublished"]) == (sum(len(d["records"]) for d in result["domains"].values())
                                          + len(result["hosts"]["records"]))


def test_check_mode_predicts_the_first_run_which_a_second_run_repeats_as_no_change(named):
    publishers = [publisher(named), publisher(named, zone="2.0.192.in-addr.arpa")]
    before = live(named, "site.test")
    predicted = run(args(publishers=publishers), check=True)
    assert predicted["changed"] is True and live(named, "site.test") == before
    first = run(args(publishers=publishers))
    assert first["changed"] is True and first["zones"] == predicted["zones"]
    assert first["diff"] == predicted["diff"] and "20200101._domainkey.site.test." in first["diff"]["before"]
    assert first["zones"]["site.test"]["removed"] == ["20200101._domainkey.site.test. TXT"]
    assert first["zones"]["2.0.192.in-addr.arpa"]["added"] == ["10.2.0.192.in-addr.arpa. PTR"]
    # unhosted.test is in no zone of the publishers: returned, not published.
    assert "_dmarc.unhosted.test. TXT" in first["unpublished"] and "_dmarc.site.test. TXT" not in first["unpublished"]
    zone = live(named, "site.test")
    assert zone[("_imaps._tcp.site.test.", "SRV")]["values"] == ["10 1 993 mx1.site.test."]
    assert sorted(zone[("site.test.", "TXT")]["values"]) == [["google-site-verification=abc"], ["v=spf1 mx -all"]]
    assert zone[("google._domainkey.site.test.", "TXT")]["values"] == [["v=DKIM1; k=rsa; p=GOOGLE"]]
    again = run(args(publishers=publishers))
    assert again["changed"] is False and all(not any(v for k, v in z.items() if k != "server")
                                             for z in again["zones"].values())


def test_a_removed_selector_is_withdrawn_and_a_new_mx_host_added(named):
    publishers = [publisher(named, zone="other.test")]
    domains = [{"name": "other.test"}]
    old_rings = [{"other.test": {"publish": [{"selector": "20261125", "key_type": "rsa", "public_key": KEY}]}}]
    run(args(domains=domains, publishers=publishers, mx_hosts=[dict(MX[0], hostname="mx1.other.test")],
             dkim_rings=old_rings))
    rings = [{"other.test": {"publish": [{"selector": "20270101", "key_type": "rsa", "public_key": KEY}]}}]
    hosts = [dict(MX[0], hostname="mx1.other.test"),
             {"hostname": "mx2.other.test", "priority": 20, "addresses": ["192.0.2.20"]}]
    result = run(args(domains=domains, publishers=publishers, mx_hosts=hosts, dkim_rings=rings))
    assert result["zones"]["other.test"]["removed"] == ["20261125._domainkey.other.test. TXT"]
    zone = live(named, "other.test")
    assert sorted(zone[("other.test.", "MX")]["values"]) == ["10 mx1.other.test.", "20 mx2.other.test."]
    assert ("20270101._domainkey.other.test.", "TXT") in zone and ("20261125._domainkey.other.test.", "TXT") not in zone


@pytest.mark.parametrize("change, message", [
    ({"key_secret": "not base64!"}, "TSIG secret of key mail-update is not base64"),
    ({"server": "ns1.site.test"}, "DNS server 'ns1.site.test' must be an IP address, optionally followed by #port"),
])
def test_bad_publisher_fails_before_any_server_is_asked(change, message):
    # Nothing listens on the port: a message about the server would mean the module asked it.
    result = run(args(publishers=[{**publisher(f"127.0.0.1#{free_port()}"), **change}]))
    assert result.get("failed") is True and result["msg"] == message


def test_wrong_secret_and_refused_zone_change_nothing(named):
    before = {zone: live(named, zone) for zone in ("site.test", "locked.test")}
    wrong = run(args(publishers=[publisher(named, key_secret=WRONG)]))
    assert wrong.get("failed") is True and "refused the TSIG key mail-update for site.test" in wrong["msg"]
    # locked.test may be read but not updated; zones are changed in the order listed, so site.test, whose
    # records this run would change (a new TTL), is left as it was.
    refused = run(args(domains=DOMAINS + [{"name": "locked.test"}], ttl=600,
                       publishers=[publisher(named, zone="locked.test"), publisher(named)]))
    assert refused.get("failed") is True and "refused the update of locked.test" in refused["msg"]
    assert {zone: live(named, zone) for zone in before} == before


def test_zone_named_twice_is_refused():
    result = run(args(publishers=[publisher("127.0.0.1"), publisher("127.0.0.1", zone="site.test.")]))
    assert result.get("failed") is True and result["msg"] == "publishers: zone site.test is named twice"


def test_tlsa_and_caa_through_a_certificate_change(named):
    current, following = certificate("mx1.dane.test"), certificate("mx1.dane.test")

    def publish(certificates: list[str], caa_issuers: list[str]) -> dict:
        hosts = [{"hostname": "mx1.dane.test", "priority": 10, "addresses": ["192.0.2.10"],
                  "certificates": certificates}]
        result = run(args(domains=[{"name": "dane.test", "mta_sts": {"mode": "enforce"}}], mx_hosts=hosts,
                          dkim_rings=[], caa_issuers=caa_issuers, publishers=[publisher(named, zone="dane.test")]))
        assert "failed" not in result, result.get("msg")
        return result["zones"]["dane.test"]

    first = publish([current], ["letsencrypt.org"])
    assert {"_25._tcp.mx1.dane.test. TLSA", "mx1.dane.test. CAA", "mta-sts.dane.test. CAA"} <= set(first["added"])
    zone = live(named, "dane.test")
    assert zone[("_25._tcp.mx1.dane.test.", "TLSA")]["values"] == [tlsa_value(current)]
    assert zone[("mx1.dane.test.", "CAA")]["values"] == ['0 issue "letsencrypt.org"']
    assert zone[("mta-sts.dane.test.", "CAA")]["values"] == ['0 issue "letsencrypt.org"']
    assert publish([current], ["letsencrypt.org"]) == {"server": named, "added": [], "changed": [], "removed": []}

    # The next certificate's key is published beside the current one, then alone once it is in use; without
    # issuers, the CAA records go; the apex CAA record is the user's and stays.
    assert publish([current, following], ["letsencrypt.org"])["changed"] == ["_25._tcp.mx1.dane.test. TLSA"]
    assert sorted(live(named, "dane.test")[("_25._tcp.mx1.dane.test.", "TLSA")]["values"]) == \
        sorted([tlsa_value(current), tlsa_value(following)])
    last = publish([following], [])
    assert last["changed"] == ["_25._tcp.mx1.dane.test. TLSA"]
    assert sorted(last["removed"]) == ["mta-sts.dane.test. CAA", "mx1.dane.test. CAA"]
    zone = live(named, "dane.test")
    assert zone[("_25._tcp.mx1.dane.test.", "TLSA")]["values"] == [tlsa_value(following)]
    assert zone[("dane.test.", "CAA")]["values"] == ['0 issue "pki.goog"']
    assert not [key for key in zone if key[1] == "CAA" and key[0] != "dane.test."]


@pytest.mark.parametrize("change, message", [
    ({"caa_issuers": ["Let's Encrypt"]}, "CAA issuer \"Let's Encrypt\" is not a CA's domain name"),
    ({"mx_hosts": [dict(MX[0], certificates=["junk"])]}, "mx1.site.test: certificates[0] is not a PEM certificate"),
])
def test_bad_certificate_or_issuer_fails_before_any_server_is_asked(change, message):
    result = run(args(publishers=[publisher(f"127.0.0.1#{free_port()}")], **change))
    assert result.get("failed") is True and result["msg"].startswith(message)


def test_a_removed_domain_is_withdrawn_but_its_published_dkim_keys_stay_until_retired(named):
    publishers = [publisher(named, zone="gone.test")]
    gone = {"name": "gone.test", "mta_sts": {"mode": "testing"}}
    ring = {"gone.test": {"publish": [{"selector": "20261125", "key_type": "rsa", "public_key": KEY}]}}
    run(args(domains=DOMAINS + [gone], publishers=publishers, dkim_rings=RINGS + [ring]))
    served = live(named, "gone.test")
    assert {("_dmarc.gone.test.", "TXT"), ("mta-sts.gone.test.", "A"), ("_imaps._tcp.gone.test.", "SRV")} <= set(served)

    # Removed from the site, its ring still publishing the key: everything of the collection's goes but the key.
    withdrawing = args(publishers=publishers, removed_rings=[ring, {"gone.test": {"publish": []}}])
    predicted = run(withdrawing, check=True)
    assert live(named, "gone.test") == served
    result = run(withdrawing)
    assert result["changed"] is True and result["zones"] == predicted["zones"]
    assert result["zones"]["gone.test"]["added"] == [] and result["zones"]["gone.test"]["changed"] == []
    assert {"gone.test. MX", "_dmarc.gone.test. TXT", "_mta-sts.gone.test. TXT", "mta-sts.gone.test. A",
            "_smtp._tls.gone.test. TXT", "_submission._tcp.gone.test. SRV"} <= set(result["zones"]["gone.test"]["removed"])
    assert [r["name"] for r in result["withdrawn"]["gone.test"]["records"]] == ["20261125._domainkey.gone.test."]
    zone = live(named, "gone.test")
    assert ("20261125._domainkey.gone.test.", "TXT") in zone and ("gone.test.", "MX") not in zone
    # The user's own records stay: the TXT beside SPF (SPF itself goes), another sender's selector, the apex CAA.
    assert zone[("gone.test.", "TXT")]["values"] == [["google-site-verification=abc"]]
    assert ("google._domainkey.gone.test.", "TXT") in zone and ("gone.test.", "CAA") in zone
    assert run(withdrawing)["changed"] is False

    # The rotation retired the key: its record goes too.
    retired = run(args(publishers=publishers, removed_rings=[{"gone.test": {"publish": []}}]))
    assert retired["zones"]["gone.test"]["removed"] == ["20261125._domainkey.gone.test. TXT"]
    assert retired["withdrawn"] == {"gone.test": {"records": [], "zone": ""}}
    # Its rings deleted, the domain is no longer the collection's: what someone puts there stays.
    dns_update("gone.test", named, [("@", "MX", "10 mx.elsewhere.test."), ("_dmarc", "TXT", '"v=DMARC1; p=none"')])
    handed_back = run(args(publishers=publishers))
    assert handed_back["changed"] is False and handed_back["withdrawn"] == {}
    assert live(named, "gone.test")[("gone.test.", "MX")]["values"] == ["10 mx.elsewhere.test."]


def test_a_site_domain_with_a_removed_ring_is_refused_before_any_server_is_asked():
    result = run(args(publishers=[publisher(f"127.0.0.1#{free_port()}")], removed_rings=RINGS))
    assert result.get("failed") is True
    assert result["msg"] == "site.test is a domain of the site, but a host has its key ring as removed"


def test_relayhost_with_a_default_spf_fails_before_any_server_is_asked():
    # Nothing listens on the port: a message about the server would mean the module asked it.
    result = run(args(relayhost="smtp.relay.test", publishers=[publisher(f"127.0.0.1#{free_port()}")]))
    assert result.get("failed") is True
    assert result["msg"].startswith("site.test: mail leaves through the smarthost smtp.relay.test (mail_relayhost), "
                                    "but the SPF record 'v=spf1 mx -all' ends in -all")
    assert "unhosted.test: mail leaves through the smarthost smtp.relay.test" in result["msg"]
    assert "Set mail_spf_include to" in result["msg"]


def test_relayhost_with_mail_spf_include_publishes_the_include_in_the_default_spf():
    result = run(args(relayhost="smtp.relay.test", spf_include=["spf.relay.test", "ip4:198.51.100.0/24"]))
    assert "failed" not in result, result.get("msg")
    assert 'site.test.\t300\tIN\tTXT\t"v=spf1 mx include:spf.relay.test ip4:198.51.100.0/24 -all"\n' in \
        result["domains"]["site.test"]["zone"]


def test_bad_spf_include_entry_is_named():
    result = run(args(spf_include=["ptr"]))
    assert result.get("failed") is True
    assert result["msg"].startswith("mail_spf_include: entry 0: 'ptr' is not a domain (include:<domain>)")
