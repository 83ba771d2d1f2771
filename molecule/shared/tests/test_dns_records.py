"""playbooks/dns_records.yml as an operator runs it: the zone fragments it writes pass named-checkzone on the
scenario's DNS server, and once published there every record resolves as the site model says (dnspython,
asking only the scenario's DNS server)."""

from __future__ import annotations

import json

import dns.resolver
import dns.reversename
import pytest
from conftest import host_address, mail_hosts, run_playbook


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    """dns_records.yml's output, published on the scenario's DNS server."""
    out = tmp_path_factory.mktemp("dns-records")
    run_playbook("playbooks/dns_records.yml", "-e", f"dns_records_dir={out}")
    run_playbook("molecule/shared/publish_dns.yml", "-e", f"test_dns_records_dir={out}")
    return out


@pytest.fixture(scope="module")
def resolver(host_vars):
    scenario_dns = dns.resolver.Resolver(configure=False)
    scenario_dns.nameservers = [host_vars["test_dns_server"]]
    return scenario_dns


def txt(resolver, name: str) -> list[str]:
    return sorted(b"".join(r.strings).decode() for r in resolver.resolve(name, "TXT"))


def test_every_domain_gets_a_zone_fragment_and_json(records_dir, host_vars):
    for domain in host_vars["mail_domains"]:
        assert (records_dir / f"{domain['name']}.zone").read_text().strip()
        assert {r["type"] for r in json.loads((records_dir / f"{domain['name']}.json").read_text())} >= {"MX", "TXT"}


def test_mx_lists_every_mail_host(records_dir, resolver, host_vars):
    mail_hostnames = sorted(f"{h.ansible.get_variables()['mail_hostname']}." for h in mail_hosts())
    for domain in host_vars["mail_domains"]:
        answer = resolver.resolve(domain["name"], "MX")
        assert sorted(r.exchange.to_text() for r in answer) == mail_hostnames
        assert {r.preference for r in answer} == {10}


def test_spf_dmarc_and_tlsrpt_resolve(records_dir, resolver):
    assert txt(resolver, "one.test") == ["v=spf1 mx -all"]
    assert txt(resolver, "_dmarc.one.test") == [
        "v=DMARC1; p=reject; sp=reject; aspf=s; adkim=s; fo=1; pct=50; rua=mailto:dmarc@one.test; "
        "ruf=mailto:dmarc@one.test"]
    assert txt(resolver, "_dmarc.two.test") == ["v=DMARC1; p=reject; sp=reject; aspf=s; adkim=s; fo=1"]
    assert txt(resolver, "_smtp._tls.one.test") == ["v=TLSRPTv1; rua=mailto:tlsrpt@one.test"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("_smtp._tls.two.test", "TXT")


def test_hosts_file_gives_each_address_its_ptr(records_dir, host, host_vars):
    records = json.loads((records_dir / "hosts.json").read_text())
    reverse = dns.reversename.from_address(host_address(host)).to_text()
    assert {"name": reverse, "type": "PTR", "ttl": 3600, "values": [f"{host_vars['mail_hostname']}."]} in records
