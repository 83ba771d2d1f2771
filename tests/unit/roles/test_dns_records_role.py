"""playbooks/dns_records.yml and its role run by ansible-playbook on two local mail hosts, publishing to a real
BIND (tests/unit/named_server.py): the records reach the zone (TLSA from each host's certificate files, CAA at
the MX names), the files are written, a second run and a --check run change nothing, and the TSIG secret is
never printed (--diff and -v included). Reading real hosts (--limit, an unreachable host) is the Molecule
scenarios' part."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dns.query
import dns.rcode
import dns.update
import pytest
from certificates import certificate
from ansible_collections.opendove.mailserver.plugins.module_utils import _dns_publish as pub
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import tlsa_value
from named_server import SECRET

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@pytest.fixture
def site(tmp_path, named):
    """Two mail hosts (both this machine, DKIM key rings and certificates in tmp_path; mx1 changing its
    certificate) of the domain role.test, publishing to named."""
    certificates = {}
    for name, host in (("mx1", "mx1"), ("mx2", "mx2"), ("mx1-next", "mx1")):
        certificates[name] = certificate(f"{host}.role.test")
        (tmp_path / f"{name}.pem").write_text(certificates[name] + certificate("ca.role.test"))
    inventory = {"all": {"children": {"mail": {"hosts": {
        f"mx{n}": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                   "mail_hostname": f"mx{n}.role.test", "mail_mx_priority": 10 * n,
                   "mail_public_addresses": [f"192.0.2.{n}"],
                   "mail_tls_certificate": str(tmp_path / f"mx{n}.pem")} for n in (1, 2)}}}}}
    inventory["all"]["children"]["mail"]["hosts"]["mx1"]["mail_tls_next_certificate"] = str(tmp_path / "mx1-next.pem")
    site_vars = {"mail_domains": [{"name": "role.test", "tlsrpt_rua": []}], "dns_records_ttl": 300,
                 "mail_caa_issuers": ["letsencrypt.org"],
                 "dns_records_dir": str(tmp_path / "out"),
                 "dns_records_publishers": [{"zone": "role.test", "server": named, "key_name": "mail-update",
                                             "key_secret": SECRET}]}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "site.json").write_text(json.dumps(site_vars))

    def run(*args: str, playbook: str = "dns_records.yml", returncode: int = 0) -> tuple[dict, str]:
        result = subprocess.run([str(PLAYBOOK), "-i", str(tmp_path / "inventory.json"), "-e", f"@{tmp_path}/site.json",
                                 f"playbooks/{playbook}", *args], capture_output=True, text=True, check=False,
                                timeout=300, cwd=ROOT,
                                env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))
        output = result.stdout + result.stderr
        assert result.returncode == returncode, output[-3000:]
        assert SECRET not in output
        return {found[0]: int(found[1]) for found in RECAP.findall(output)}, output

    run.out = tmp_path / "out"
    run.tlsa = {name: tlsa_value(pem) for name, pem in certificates.items()}
    return run


def live(server: str) -> dict:
    return pub.read_zone("role.test", server, pub.tsig_key("mail-update", "hmac-sha256", SECRET), timeout=2)


def test_publishes_writes_and_then_changes_nothing(site, named):
    predicted, output = site("--check", "--diff")
    assert sum(predicted.values()) > 0 and "_submission._tcp.role.test." in output
    assert ("_dmarc.role.test.", "TXT") not in live(named)

    changed, output = site("--diff", "-v")
    assert sum(changed.values()) > 0
    zone = live(named)
    assert sorted(zone[("role.test.", "MX")]["values"]) == ["10 mx1.role.test.", "20 mx2.role.test."]
    assert zone[("mx2.role.test.", "A")]["values"] == ["192.0.2.2"]
    assert zone[("_imaps._tcp.role.test.", "SRV")]["values"] == ["10 1 993 mx1.role.test.", "20 1 993 mx2.role.test."]
    assert ("20200101._domainkey.role.test.", "TXT") not in zone  # the old selector of the zone file, withdrawn
    assert zone[("google._domainkey.role.test.", "TXT")]["values"] == [["v=DKIM1; k=rsa; p=GOOGLE"]]
    # What the files say is what the zone serves (the apex TXT rrset also holds the user's record).
    for record in json.loads((site.out / "role.test.json").read_text()):
        served = zone[(record["name"], record["type"])]["values"]
        assert all(value in served for value in record["values"]), (record, served)
    assert (site.out / "hosts.zone").read_text().count("\tPTR\t") == 2
    # Each host's certificate key, mx1's next one beside its current one; CAA at the MX names, not at the apex.
    assert sorted(zone[("_25._tcp.mx1.role.test.", "TLSA")]["values"]) == sorted([site.tlsa["mx1"],
                                                                                 site.tlsa["mx1-next"]])
    assert zone[("_25._tcp.mx2.role.test.", "TLSA")]["values"] == [site.tlsa["mx2"]]
    assert zone[("mx2.role.test.", "CAA")]["values"] == ['0 issue "letsencrypt.org"']
    assert zone[("role.test.", "CAA")]["values"] == ['0 issue "pki.goog"']
    for record in json.loads((site.out / "hosts.json").read_text()):
        if record["type"] != "PTR":
            assert sorted(zone[(record["name"], record["type"])]["values"]) == sorted(record["values"]), record

    assert site()[0] == {"mx1": 0, "mx2": 0}
    assert site("--check")[0] == {"mx1": 0, "mx2": 0}


def test_dns_check_passes_on_what_was_published_and_names_what_is_missing(site, named):
    key = pub.tsig_key("mail-update", "hmac-sha256", SECRET)
    both_zones = json.dumps({"dns_records_publishers": [
        {"zone": zone, "server": named, "key_name": "mail-update", "key_secret": SECRET}
        for zone in ("role.test", "2.0.192.in-addr.arpa")]})
    site("-e", both_zones)
    # The MX addresses are documentation addresses (RFC 5737): nothing of theirs is asked on port 25.
    check = ("-e", json.dumps({"dns_records_check_servers": [named], "dns_records_check_certificates": False}),
             "--diff", "-v")

    changed, output = site(*check, playbook="dns_check.yml")
    assert changed == {"mx1": 0, "mx2": 0}
    assert "Every record senders depend on is served by every authoritative server" in output
    report = json.loads((site.out / "check.json").read_text())
    assert {check["status"] for checks in report.values() for check in checks} == {"ok"}
    assert ("ok", "PTR", "1.2.0.192.in-addr.arpa.") in {(c["status"], c["type"], c["name"]) for c in report["hosts"]}

    # Someone deletes the DMARC record and adds a second SPF record: the check fails and says which, per server.
    update = dns.update.UpdateMessage("role.test", keyring=key)
    update.delete("_dmarc", "TXT")
    update.add("@", 300, "TXT", '"v=spf1 -all"')
    address, port = pub.parse_server(named)
    assert dns.query.tcp(update, address, port=port, timeout=5).rcode() == dns.rcode.NOERROR
    changed, output = site(*check, playbook="dns_check.yml", returncode=2)
    assert "_dmarc.role.test. TXT: missing" in output and "role.test. TXT: extra" in output
    report = json.loads((site.out / "check.json").read_text())
    dmarc = next(c for c in report["role.test"] if c["name"] == "_dmarc.role.test.")
    assert dmarc["servers"] == {named: "missing"} and not dmarc["advisory"]


def test_a_smarthost_needs_mail_spf_include_and_its_password_is_never_shown(site, named):
    relay = json.dumps({"mail_relayhost": {"host": "smtp.relay.test", "username": "mx", "password": "relay-Pass-7"}})
    before = live(named)
    output = site("-e", relay, "-v", returncode=2)[1]
    assert "role.test: mail leaves through the smarthost smtp.relay.test (mail_relayhost)" in output
    assert "Set mail_spf_include to" in output and "relay-Pass-7" not in output
    assert live(named) == before

    spf_include = json.dumps({"mail_spf_include": ["spf.relay.test"]})
    output = site("-e", relay, "-e", spf_include, "-v")[1]
    assert "relay-Pass-7" not in output
    assert ["v=spf1 mx include:spf.relay.test -all"] in live(named)[("role.test.", "TXT")]["values"]
