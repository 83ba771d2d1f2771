"""playbooks/dns_records.yml as an operator runs it: the zone fragments it writes pass named-checkzone on the
scenario's DNS server, and once published there every record resolves as the site model says (dnspython,
asking only the scenario's DNS server)."""

from __future__ import annotations

import json

import dns.resolver
import dns.reversename
import pytest
from conftest import host_address, key_ring, mail_hosts


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


def test_spf_dmarc_and_tlsrpt_resolve(published_records, scenario_dns):
    assert txt(scenario_dns, "one.test") == ["v=spf1 mx -all"]
    assert txt(scenario_dns, "_dmarc.one.test") == [
        "v=DMARC1; p=reject; sp=reject; aspf=s; adkim=s; fo=1; pct=50; rua=mailto:dmarc@one.test; "
        "ruf=mailto:dmarc@one.test"]
    assert txt(scenario_dns, "_dmarc.two.test") == ["v=DMARC1; p=reject; sp=reject; aspf=s; adkim=s; fo=1"]
    assert txt(scenario_dns, "_smtp._tls.one.test") == ["v=TLSRPTv1; rua=mailto:tlsrpt@one.test"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        scenario_dns.resolve("_smtp._tls.two.test", "TXT")


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
