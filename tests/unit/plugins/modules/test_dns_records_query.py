"""The dns_records module with state=query, as playbooks/dns_check.yml runs it: what it published to a real BIND
(tests/unit/named_server.py) checks ok, each change made behind its back is named with its status and fails the
check unless advisory, servers that do not answer or cannot be found are named; the MX hosts' SMTP certificates
are verified. Only 127.0.0.1 is asked: the servers or resolvers are always given, the policy hosts (whose addresses
are not 127.0.0.1) never fetched, and certificates asked only of an SMTP server on 127.0.0.1 (the other tests turn
the check off)."""

from __future__ import annotations

import functools
import json

import ad_hoc
import dns.query
import dns.rcode
import dns.update
import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.opendove.mailserver.plugins.module_utils import _dns_live
from ansible_collections.opendove.mailserver.plugins.module_utils import _dns_publish as pub
from ansible_collections.opendove.mailserver.plugins.module_utils import _mta_sts
from ansible_collections.opendove.mailserver.plugins.modules import dns_records
from named_server import SECRET, SECRETS, free_port
from smtp_server import SmtpServer

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "A" * 348 + "IDAQAB"
# mx1 has two addresses and mta-sts.query.test the three of both hosts: rrsets of several records of the site.
MX = [{"hostname": "mx1.query.test", "priority": 10, "addresses": ["192.0.2.77", "192.0.2.78"]},
      {"hostname": "mx2.query.test", "priority": 20, "addresses": ["192.0.2.79"]}]
RINGS = [{"query.test": {"publish": [{"selector": "20261125-mx1", "key_type": "rsa", "public_key": KEY}],
                         "retired": ["20250101-mx1"]}}]
DOMAINS = [{"name": "query.test", "mta_sts": {"mode": "enforce"}}]


def args(**extra) -> dict:
    return {"domains": DOMAINS, "mx_hosts": MX, "dkim_rings": RINGS, "ttl": 300, "timeout": 2, **extra}


def run(arguments: dict) -> dict:
    result, output = ad_hoc.run_module("dns_records", arguments)
    assert not any(secret in output for secret in SECRETS), "a TSIG secret is in the output"
    return result


def query(server: str, **extra) -> dict:
    result = run(args(state="query", servers=[server], check_policies=False, check_certificates=False, **extra))
    assert "failed" not in result, result.get("msg")
    return result


def publish(server: str) -> None:
    publishers = [{"zone": zone, "server": server, "key_name": "mail-update", "key_secret": SECRET}
                  for zone in ("query.test", "2.0.192.in-addr.arpa")]
    result = run(args(publishers=publishers))
    assert "failed" not in result, result.get("msg")


def statuses(result: dict) -> dict:
    return {(c["name"], c["type"]): c["status"] for checks in result["report"].values() for c in checks}


def test_what_was_published_is_ok_and_changes_behind_the_modules_back_fail_the_check_unless_advisory(named):
    publish(named)
    result = query(named)
    assert result["changed"] is False and result["ok"] is True and result["failed_checks"] == []
    assert set(statuses(result).values()) == {"ok"}, result["table"]
    assert {("mta-sts.query.test.", "A"), ("mx1.query.test.", "A"), ("77.2.0.192.in-addr.arpa.", "PTR"),
            ("78.2.0.192.in-addr.arpa.", "PTR"), ("79.2.0.192.in-addr.arpa.", "PTR"),
            ("20261125-mx1._domainkey.query.test.", "TXT")} <= set(statuses(result))
    assert not any("20250101" in check[0] for check in statuses(result))  # retired, not served: nothing to say
    assert result["table"][0] == "query.test:" and "hosts:" in result["table"]
    assert all(c["servers"] == {named: "ok"} for checks in result["report"].values() for c in checks
               if c["type"] != "SPF")
    # SPF as a receiver evaluates it (pyspf, through the servers named): every MX address passes.
    spf = {c["name"]: c for c in result["report"]["query.test"] if c["type"] == "SPF"}
    assert sorted(spf) == ["query.test. 192.0.2.77", "query.test. 192.0.2.78", "query.test. 192.0.2.79",
                           "query.test. lookups"]
    assert {c["status"] for c in spf.values()} == {"ok"}

    old_id = _mta_sts.txt_value(_mta_sts.policy_text({"mode": "testing"}, ["mx1.query.test", "mx2.query.test"]))
    update = dns.update.UpdateMessage("query.test", keyring=pub.tsig_key("mail-update", "hmac-sha256", SECRET))
    update.delete("_dmarc", "TXT")
    update.replace("_mta-sts", 300, "TXT", f'"{old_id}"')
    update.add("20250101-mx1._domainkey", 300, "TXT", '"v=DKIM1; k=rsa; p=OLD"')
    update.add("@", 300, "TXT", '"v=spf1 -all"')
    update.delete("_imaps._tcp", "SRV")
    reverse = dns.update.UpdateMessage("2.0.192.in-addr.arpa",
                                       keyring=pub.tsig_key("mail-update", "hmac-sha256", SECRET))
    reverse.replace("78", 300, "PTR", "host78.isp.example.")
    address, port = pub.parse_server(named)
    for message in (update, reverse):
        assert dns.query.tcp(message, address, port=port, timeout=5).rcode() == dns.rcode.NOERROR
    result = query(named)
    wrong = {key: status for key, status in statuses(result).items() if status != "ok" and key[1] != "SPF"}
    assert wrong == {("_dmarc.query.test.", "TXT"): "missing", ("_mta-sts.query.test.", "TXT"): "stale",
                     ("20250101-mx1._domainkey.query.test.", "TXT"): "stale", ("query.test.", "TXT"): "extra",
                     ("_imaps._tcp.query.test.", "SRV"): "missing", ("78.2.0.192.in-addr.arpa.", "PTR"): "different"}
    assert result["ok"] is False and sorted(result["failed_checks"]) == [
        "20250101-mx1._domainkey.query.test. TXT: stale", "78.2.0.192.in-addr.arpa. PTR: different",
        "_dmarc.query.test. TXT: missing", "_mta-sts.query.test. TXT: stale", "query.test. TXT: extra"]
    # The site's own SPF record is what is evaluated (the second record is the TXT check's): still a pass.
    assert {c["status"] for c in result["report"]["query.test"] if c["type"] == "SPF"} == {"ok"}
    assert f"  missing     SRV   _imaps._tcp.query.test. (advisory)  {named}: missing" in result["table"]


def test_a_server_that_does_not_answer_is_named_for_every_record(named):
    silent = f"127.0.0.1#{free_port()}"
    hosts = [dict(MX[0], addresses=["192.0.2.77"])]
    result = query(silent, domains=[{"name": "query.test", "tlsrpt_rua": []}], mx_hosts=hosts, dkim_rings=[],
                   timeout=0.2)
    assert result["ok"] is False
    assert {status for key, status in statuses(result).items() if key[1] != "SPF"} == {"unreachable"}
    assert all(c["servers"] == {silent: "unreachable: no answer in time"}
               for checks in result["report"].values() for c in checks if c["type"] != "SPF")
    assert {c["status"] for c in result["report"]["query.test"] if c["type"] == "SPF"} == {"fail"}
    assert len(result["failed_checks"]) == len([c for c in statuses(result) if "._tcp." not in c[0]])


def test_zones_whose_name_servers_cannot_be_found_are_named(named):
    # named (the resolver here) serves neither unserved.test nor 100.51.198.in-addr.arpa: nothing else is asked.
    hosts = [{"hostname": "mx1.unserved.test", "priority": 10, "addresses": ["198.51.100.80"]}]
    result = run(args(state="query", resolvers=[named], domains=[{"name": "unserved.test"}], mx_hosts=hosts,
                      dkim_rings=[], check_policies=False, check_certificates=False))
    assert result["ok"] is False
    assert {status for key, status in statuses(result).items() if key[1] != "SPF"} == {"unreachable"}
    # SPF is asked of the resolver named, never of this machine's: it refuses unserved.test.
    assert {c["status"] for c in result["report"]["unserved.test"] if c["type"] == "SPF"} == {"fail"}
    dmarc = next(c for c in result["report"]["unserved.test"] if c["name"] == "_dmarc.unserved.test.")
    assert list(dmarc["servers"]) == ["name servers"]
    assert dmarc["servers"]["name servers"].startswith("the name servers of _dmarc.unserved.test. cannot be found: ")
    ptr = next(c for c in result["report"]["hosts"] if c["type"] == "PTR")
    assert ptr["servers"]["name servers"].startswith("the name servers of 80.100.51.198.in-addr.arpa. cannot be found")


def test_a_bad_server_or_resolver_fails_before_any_is_asked():
    # Nothing listens on the port: a message about the server would mean the module asked it.
    result = run(args(state="query", servers=[f"127.0.0.1#{free_port()}"], resolvers=["ns1.query.test"]))
    assert result.get("failed") is True
    assert result["msg"] == "DNS server 'ns1.query.test' must be an IP address, optionally followed by #port"


def run_here(arguments: dict, capsys) -> dict:
    """The module run in this process (ad_hoc runs it in another, as ansible does): only here can a test send
    the certificate check to its SMTP server's port, port 25 needing root."""
    with patch_module_args(arguments), pytest.raises(SystemExit):
        dns_records.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def smtp(monkeypatch):
    """An SMTP server on 127.0.0.1, where the certificate check of the module run here goes instead of port 25."""
    server = SmtpServer()
    monkeypatch.setattr(_dns_live, "smtp_certificate", functools.partial(_dns_live.smtp_certificate, port=server.port))
    yield server
    server.close()


def test_the_mx_hosts_certificates_are_verified_and_a_wrong_one_fails_the_check(named, smtp, tmp_path, capsys):
    def check(**extra) -> dict:
        return run_here(args(state="query", servers=[named], mx_hosts=[dict(MX[0], addresses=["127.0.0.1"])],
                             check_policies=False, **extra), capsys)

    result = check(policy_ca_file=smtp.serve(tmp_path, "mx1.query.test"))
    certificate = {"name": "smtp://mx1.query.test:25 certificate", "type": "TLS", "status": "ok", "advisory": False,
                   "servers": {"127.0.0.1": "ok: 90 days left"}}
    assert certificate in result["report"]["hosts"]
    assert not any(" TLS: " in failed for failed in result["failed_checks"])

    result = check(policy_ca_file=smtp.serve(tmp_path, "mx2.query.test"))
    assert dict(certificate, status="fail", servers={
        "127.0.0.1": "fail: certificate: Hostname mismatch, certificate is not valid for 'mx1.query.test'."}
    ) in result["report"]["hosts"]
    assert "smtp://mx1.query.test:25 certificate TLS: fail" in result["failed_checks"] and result["ok"] is False

    result = check(check_certificates=False)
    assert not any(c["type"] == "TLS" for c in result["report"]["hosts"])
