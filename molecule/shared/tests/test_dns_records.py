"""playbooks/dns_records.yml as an operator runs it: the zone fragments it writes pass named-checkzone on the
scenario's DNS server, and once published there every record resolves as the site model says (dnspython,
asking only the scenario's DNS server)."""

from __future__ import annotations

import json

import dns.reversename
import pytest
from conftest import host_address, key_ring, mail_hosts, run_playbook


def txt(resolver, name: str) -> list[str]:
    return sorted(b"".join(r.strings).decode() for r in resolver.resolve(name, "TXT"))


def test_every_domain_gets_a_zone_fragment_and_json(published_records, host_vars):
    for domain in host_vars["mail_domains"]:
        assert (published_records / f"{domain['name']}.zone").read_text().strip()
        records = json.loads((published_records / f"{domain['name']}.json").read_text())
        assert {r["type"] for r in records} >= {"MX", "TXT"}


def test_mx_lists_every_mail_host(published_records, scenario_dns, host_vars):
    mail_hostnames = sorted(f"{h.ansible.get_variables()['mail_hostname']}." for h in mail_hosts())
    for domain in host_vars["mail_domains"]:
        answer = scenario_dns.resolve(domain["name"], "MX")
        assert sorted(r.exchange.to_text() for r in answer) == mail_hostnames
        assert {r.preference for r in answer} == {10}


def test_spf_dmarc_and_tlsrpt_resolve(published_records, scenario_dns, host_vars):
    # With a smarthost (the rspamd scenario), the default record authorises it too: mail_spf_include.
    relay_terms = [t if ":" in t or t == "a" else f"include:{t}" for t in host_vars.get("mail_spf_include", [])]
    assert txt(scenario_dns, "one.test") == [" ".join(["v=spf1", "mx", *relay_terms, "-all"])]
    assert txt(scenario_dns, "_dmarc.one.test") == [
        "v=DMARC1; p=reject; sp=reject; aspf=s; adkim=s; fo=1; pct=50; rua=mailto:dmarc@one.test; "
        "ruf=mailto:dmarc@one.test"]
    assert txt(scenario_dns, "_dmarc.two.test") == ["v=DMARC1; p=reject; sp=reject; aspf=s; adkim=s; fo=1"]
    assert txt(scenario_dns, "_smtp._tls.one.test") == ["v=TLSRPTv1; rua=mailto:tlsrpt@one.test"]
    # Without tlsrpt_rua, reports go to the domain's postmaster.
    assert txt(scenario_dns, "_smtp._tls.two.test") == ["v=TLSRPTv1; rua=mailto:postmaster@two.test"]


@pytest.mark.parametrize("service, port", [("_submissions._tcp", 465), ("_submission._tcp", 587),
                                           ("_imaps._tcp", 993), ("_imap._tcp", 143)])
def test_mail_clients_find_every_host_by_srv(published_records, scenario_dns, host_vars, service, port):
    """RFC 6186: what Thunderbird and other clients look up, each pointing at a port the hosts serve."""
    mail_hostnames = sorted(f"{h.ansible.get_variables()['mail_hostname']}." for h in mail_hosts())
    for domain in host_vars["mail_domains"]:
        answer = scenario_dns.resolve(f"{service}.{domain['name']}", "SRV")
        assert sorted((r.target.to_text(), r.port, r.priority) for r in answer) == [
            (name, port, 10) for name in mail_hostnames]


def test_hosts_file_gives_each_address_its_ptr(published_records, host, host_vars):
    records = json.loads((published_records / "hosts.json").read_text())
    reverse = dns.reversename.from_address(host_address(host)).to_text()
    assert {"name": reverse, "type": "PTR", "ttl": 3600, "values": [f"{host_vars['mail_hostname']}."]} in records


def test_every_hosts_dkim_keys_resolve(published_records, scenario_dns, host, host_vars):
    """Each MX host signs with its own keys: all of them are published, under selectors tagged by host."""
    tag = host_vars["mail_hostname"].split(".")[0]
    for domain in host_vars["mail_domains"]:
        keys = [k for k in key_ring(host, domain["name"])["keys"] if k["state"] != "retired"]
        assert keys and all(f"-{tag}" in k["selector"] for k in keys)
        for key in keys:
            assert txt(scenario_dns, f"{key['selector']}._domainkey.{domain['name']}") == [
                f"v=DKIM1; k={key['key_type']}; h=sha256; t=s; p={key['public_key']}"]


def zone_texts(directory) -> str:
    return "".join(path.read_text() for path in sorted(directory.glob("*.zone")))


def published_selectors() -> dict[str, list[str]]:
    """Each mail host's mail_hostname -> the selectors of its key rings that belong in DNS."""
    return {h.ansible.get_variables()["mail_hostname"]: [
        f"{key['selector']}._domainkey.{domain['name']}" for domain in h.ansible.get_variables()["mail_domains"]
        for key in key_ring(h, domain["name"])["keys"] if key["state"] != "retired"] for h in mail_hosts()}


def test_limit_still_gives_every_mx_and_every_selector(tmp_path):
    """Under --limit the records still come from every host of the mail group, never from the run's hosts only."""
    run_playbook("playbooks/dns_records.yml", "--limit", mail_hosts()[0].backend.host, "-e", f"dns_records_dir={tmp_path}")
    zones = zone_texts(tmp_path)
    for hostname, selectors in published_selectors().items():
        assert f"\tIN\tMX\t10 {hostname}." in zones
        assert selectors and all(f"{selector}.\t" in zones for selector in selectors)


def test_an_unreachable_mail_host_stops_the_play_before_any_zone(tmp_path):
    """A mail host that cannot be read (here: SSH to a closed port on 127.0.0.1) is named, and nothing is written."""
    unreachable = mail_hosts()[-1].backend.host
    inventory = tmp_path / "unreachable.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {unreachable: {
        "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_user": "nobody"}}}}))
    output = run_playbook("playbooks/dns_records.yml", "-i", str(inventory), "-e", f"dns_records_dir={tmp_path}/out",
                          succeed=False)
    # Named by the check (when the play's first host answers) or by Ansible's own unreachable error.
    assert unreachable in output, output[-3000:]
    assert not (tmp_path / "out").exists()
