"""The rspamd role keeps its settings in override.d and leaves local.d to the operator: the operator's own
files there (molecule/shared/prepare.yml) are kept and merged, the role's keys win over theirs, and what an
earlier version of the role wrote to local.d is gone."""

import ipaddress
import re

LOCAL_D = "/etc/rspamd/local.d"


def configdump(host, section: str) -> str:
    return host.check_output(f"rspamadm configdump {section}")


def test_operators_files_are_kept_as_they_were(host):
    multimap = host.file(f"{LOCAL_D}/multimap.conf").content_string
    assert multimap.startswith("# The operator's own rule") and "OPENDOVE_OPERATOR_RULE" in multimap
    assert host.file(f"{LOCAL_D}/options.inc").content_string.endswith("history_rows = 321;\n")


def test_operators_settings_are_merged_with_the_roles(host, host_vars):
    options = configdump(host, "options")
    assert re.search(r"^history_rows = 321;$", options, re.M), options
    # The role's key wins over Rspamd's default, which trusts every private network: only the addresses it was
    # given are local, besides the loopback address Rspamd's own cgp.inc merges in (127.2.4.7).
    local_addrs = re.search(r"^local_addrs \[(.*?)\]", options, re.M | re.S)
    assert local_addrs, options
    found = set(re.findall(r'"([^"]+)"', local_addrs[1]))
    wanted = set(host_vars.get("rspamd_local_addresses", ["127.0.0.0/8", "::1"]))
    assert wanted <= found, options
    loopback = ipaddress.ip_network("127.0.0.0/8")
    assert all(ipaddress.ip_network(extra).subnet_of(loopback) for extra in found - wanted), found
    assert "OPENDOVE_OPERATOR_RULE" in configdump(host, "multimap")


def test_air_gapped_turns_the_operators_online_module_off(host, host_vars):
    assert host_vars["rspamd_air_gapped"]
    multimap = configdump(host, "multimap")
    assert re.search(r"^enabled = false;$", multimap, re.M), multimap


def test_what_an_earlier_role_wrote_to_local_d_is_gone(host):
    assert not host.file(f"{LOCAL_D}/milter_headers.conf").exists
    assert host.file("/etc/rspamd/override.d/milter_headers.conf").contains("Ansible managed")
    headers = configdump(host, "milter_headers")
    assert "authentication-results" in headers, headers
