"""MTA-STS as a sending MTA meets it: the policy host resolves through the scenario's DNS server to the mail
hosts, each serves every domain's policy over HTTPS (certificate verified against the test CA), as RFC 8461
asks, and nothing else; the `_mta-sts` id follows the policy text."""

from __future__ import annotations

import http.client
import json
import re
import socket

import pytest
from conftest import host_address, mail_hosts, run_playbook

pytestmark = pytest.mark.pair

POLICY_PATH = "/.well-known/mta-sts.txt"
DEFAULT_MAX_AGE = 604800


def get(address: str, name: str, path: str, context=None, port: int = 443) -> tuple[int, str, bytes]:
    """GET name+path from address (HTTPS with SNI and certificate check for `name`, or plain HTTP without a
    context): status, Content-Type and body. Redirects are not followed, as RFC 8461 3.3 forbids."""
    if context is None:
        connection = http.client.HTTPConnection(address, port, timeout=20)
    else:
        connection = http.client.HTTPSConnection(name, port, context=context, timeout=20)
        connection.sock = context.wrap_socket(socket.create_connection((address, port), timeout=20),
                                              server_hostname=name)
    try:
        connection.request("GET", path, headers={"Host": name})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def site_policies(variables: dict) -> dict:
    """{policy host name: the domain's mta_sts settings} for every domain of the site model that has them."""
    found = {f"mta-sts.{d['name']}": d["mta_sts"] for d in variables["mail_domains"] if d.get("mta_sts")}
    assert found, "the scenario's site model has no MTA-STS domain"
    return found


@pytest.fixture(scope="module")
def policies(host_vars):
    return site_policies(host_vars)


def test_nginx_runs_and_serves_https(host):
    assert host.service("nginx").is_running and host.service("nginx").is_enabled
    assert host.socket("tcp://0.0.0.0:443").is_listening


def test_policy_hosts_resolve_to_every_mail_host(published_records, scenario_dns, policies):
    addresses = sorted(host_address(h) for h in mail_hosts())
    for name in policies:
        assert sorted(r.address for r in scenario_dns.resolve(name, "A")) == addresses


def test_every_policy_is_served_as_rfc_8461_says(address, tls, policies):
    mx_hosts = sorted(h.ansible.get_variables()["mail_hostname"] for h in mail_hosts())
    for name, settings in policies.items():
        status, content_type, body = get(address, name, POLICY_PATH, tls)
        assert status == 200, (name, status)
        assert content_type.split(";")[0].strip() == "text/plain"
        text = body.decode("ascii")
        assert text.endswith("\r\n") and text.count("\n") == text.count("\r\n"), repr(text)
        lines = text.split("\r\n")[:-1]
        assert lines[0] == "version: STSv1"
        assert f"mode: {settings['mode']}" in lines
        assert sorted(line[4:] for line in lines if line.startswith("mx: ")) == mx_hosts
        assert f"max_age: {settings.get('max_age', DEFAULT_MAX_AGE)}" in lines
        assert len(lines) == 3 + len(mx_hosts)


def test_nothing_else_is_served_on_the_policy_names(address, tls, policies):
    for name in policies:
        for path in ("/", "/index.html", "/.well-known/", POLICY_PATH + ".bak"):
            assert get(address, name, path, tls)[0] == 404, (name, path)


def test_plain_http_never_returns_the_policy(address, policies):
    for name in policies:
        status, content_type, body = get(address, name, POLICY_PATH)
        assert status != 200 and b"STSv1" not in body, (name, status)


def sts_ids(directory) -> dict[str, str]:
    """{domain: the id of its _mta-sts record} from a dns_records.yml output directory."""
    ids = {}
    for path in directory.glob("*.json"):
        for record in json.loads(path.read_text()) if path.stem != "hosts" else []:
            if record["name"].startswith("_mta-sts."):
                ids[path.stem] = re.fullmatch(r"v=STSv1; id=([A-Za-z0-9]{1,32})", record["values"][0][0])[1]
    return ids


def test_published_id_resolves(published_records, scenario_dns, policies):
    ids = sts_ids(published_records)
    assert sorted(ids) == sorted(name.removeprefix("mta-sts.") for name in policies)
    for domain, policy_id in ids.items():
        answer = scenario_dns.resolve(f"_mta-sts.{domain}", "TXT")
        assert [b"".join(r.strings).decode() for r in answer] == [f"v=STSv1; id={policy_id}"]


def test_id_changes_exactly_when_a_policy_changes(published_records, tmp_path):
    """Once for the site (the records come from every host)."""
    host_vars = mail_hosts()[0].ansible.get_variables()
    before = sts_ids(published_records)
    again = tmp_path / "again"
    run_playbook("playbooks/dns_records.yml", "-e", f"dns_records_dir={again}")
    assert sts_ids(again) == before

    # one.test switches mode; two.test keeps its policy (and so its id).
    domains = [dict(d, mta_sts=dict(d["mta_sts"], mode="none")) if d["name"] == "one.test" else d
               for d in host_vars["mail_domains"]]
    extra = tmp_path / "mode.json"
    extra.write_text(json.dumps({"mail_domains": domains}))
    changed = tmp_path / "changed"
    run_playbook("playbooks/dns_records.yml", "-e", f"@{extra}", "-e", f"dns_records_dir={changed}")
    ids = sts_ids(changed)
    assert ids["one.test"] != before["one.test"] and ids["two.test"] == before["two.test"]

    # Another MX name in the policies (mta_sts_mx_hosts): every policy's mx lines, and so every id, change.
    mx_hosts = [h.ansible.get_variables()["mail_hostname"] for h in mail_hosts()] + ["backup.one.test"]
    extra = tmp_path / "mx.json"
    extra.write_text(json.dumps({"mta_sts_mx_hosts": mx_hosts}))
    more = tmp_path / "more"
    run_playbook("playbooks/dns_records.yml", "-e", f"@{extra}", "-e", f"dns_records_dir={more}")
    assert all(sts_ids(more)[domain] != before[domain] for domain in before)


def test_failed_nginx_test_leaves_the_served_policy_in_place(tls):
    """A key that does not match the certificate fails `nginx -t` on every host (one site.yml run): the site file
    stays, nginx keeps serving."""
    config = "/etc/nginx/conf.d/opendove-mta-sts.conf"
    hosts = mail_hosts()
    name = next(iter(site_policies(hosts[0].ansible.get_variables())))

    def serving(host) -> tuple:
        return (host.file(config).sha256sum, host.check_output("systemctl show -p MainPID --value nginx"),
                get(host_address(host), name, POLICY_PATH, tls))

    before = {}
    for host in hosts:
        host.run("python3 -c 'from cryptography.hazmat.primitives import serialization as s; "
                 "from cryptography.hazmat.primitives.asymmetric import ec; import sys; "
                 "sys.stdout.buffer.write(ec.generate_private_key(ec.SECP256R1()).private_bytes("
                 "s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))' > /root/other.key")
        before[host.backend.host] = serving(host)
    output = run_playbook("playbooks/site.yml", "-e", "mta_sts_tls_private_key=/root/other.key", succeed=False)
    assert "failed to validate" in output and "key values mismatch" in output
    assert {host.backend.host: serving(host) for host in hosts} == before
