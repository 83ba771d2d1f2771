"""The playbook as users run it: --check on a converged host changes nothing, and a multi-domain rollout
(a third domain and its account added to the inventory) works without touching the other domains."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import deliver_inbound, fetch, host_address, mail_hosts, new_message, run_playbook, submit

RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def run_site(*args: str, succeed: bool = True) -> tuple[dict[str, tuple[int, int, int]], str]:
    """Run playbooks/site.yml against the scenario's hosts: (changed, unreachable, failed) per host, and
    the output."""
    output = run_playbook("playbooks/site.yml", *args, succeed=succeed)
    recap = {m[0]: tuple(int(n) for n in m[1:]) for m in RECAP.findall(output)}
    assert recap, output[-2000:]
    return recap, output


def message_files(host) -> set[str]:
    """Every stored message, as <mailbox path>/<unique name> (flags stripped: they may change)."""
    out = host.check_output("find /home/vmail -path '*/Maildir/*' -type f \\( -path '*/new/*' -o -path '*/cur/*' \\)")
    return {line.split(":2,")[0].replace("/new/", "/").replace("/cur/", "/") for line in out.splitlines()}


def main_pids(host) -> dict[str, str]:
    return {s: host.check_output(f"systemctl show -p MainPID --value {s}") for s in ("opensmtpd", "dovecot")}


def test_check_mode_on_converged_hosts_reports_no_change():
    recap, output = run_site("--check", "--diff")
    changed = [line for line in output.splitlines() if line.startswith("changed:")]
    assert all(counts == (0, 0, 0) for counts in recap.values()), (recap, changed)


CLEAR_TEXT = "correct-horse-battery"


@pytest.mark.parametrize("overrides, message", [
    ({"mail_accounts": [{"address": "x@unhosted.test", "password_hash": "$6$M89SwZdOBVCxPkgO$" + "a" * 86}]},
     "mail_accounts[0] (x@unhosted.test): domain unhosted.test is not in mail_domains"),
    ({"mail_accounts": [{"address": "alice@one.test", "password_hash": CLEAR_TEXT}]},
     "mail_accounts[0] (alice@one.test): password_hash is not a crypt hash"),
    ({"mail_aliases": {"a@one.test": ["b@one.test"], "b@one.test": ["a@one.test"]}},
     "mail_aliases: alias loop a@one.test -> b@one.test -> a@one.test"),
    ({"mail_domains": [{"name": "one_test"}]}, "mail_domains[0]: name 'one_test' is not a lower-case domain name"),
    ({"mail_domains": [{"name": "One.test"}]},
     "mail_domains[0]: name 'One.test' is not a lower-case domain name: it has upper-case letters: write 'one.test'"),
    ({"mail_password_hash_max_cost": {"bcrypt_cost": 5}},
     "mail_accounts[1] (bob@two.test): password_hash is a bcrypt hash of cost 6, above the limit of 5 "
     "(mail_password_hash_max_cost.bcrypt_cost)"),
    ({"mail_tls_private_key": "/etc/ssl/private/missing.key", "mta_sts_tls_private_key": "/etc/ssl/private/mail.key"},
     "missing on the host (variable: path): {'mail_tls_private_key': '/etc/ssl/private/missing.key'}"),
    ({"mta_sts_tls_certificate": "/etc/ssl/certs/missing.pem"},
     "missing on the host (variable: path): {'mta_sts_tls_certificate': '/etc/ssl/certs/missing.pem'}"),
    ({"mail_domains": [{"name": "one.test", "mta_sts": {"mode": "strict"}}]},
     "mail_domains[0] (one.test).mta_sts: mode 'strict' is not one of testing, enforce, none"),
    ({"mail_domains": [{"name": "one.test", "mta_sts": {"mode": "enforce", "max_age": 31557601}}]},
     "mail_domains[0] (one.test).mta_sts: max_age 31557601 is not a whole number of seconds from 0 to 31557600"),
    ({"mail_relayhost": {"host": "relay.outside.test", "port": 65536}},
     "mail_relayhost: port 65536 is not a port number from 1 to 65535"),
    ({"mail_relayhost": {"host": "smtp://relay.outside.test"}}, "mail_relayhost: host 'smtp://relay.outside.test' has a scheme"),
    ({"mail_relayhost": {"host": "relay.outside.test/submit"}}, "mail_relayhost: host 'relay.outside.test/submit' has a path"),
    ({"mail_relayhost": {"host": "relay.outside.test", "ca_file": "/etc/ssl/certs/missing-ca.pem"}},
     "'mail_relayhost.ca_file': '/etc/ssl/certs/missing-ca.pem'"),
    ({"opensmtpd_submission_auth": ["client_certificate"],
      "opensmtpd_submission_client_ca": "/etc/ssl/certs/opendove-clients-ca.pem"},
     "without password, anyone holding a client certificate could send mail through this host as any of its users "
     "(OpenSMTPD does not tie a certificate to a login): that could make an open relay"),
    ({"mail_domains": "one.test"}, "mail_domains"),
    ({"mail_domains": [{"name": "one.test", "dmarc": {"p": "maybe"}}]},
     "mail_domains[0] (one.test).dmarc: DMARC p='maybe' is invalid; expected none, quarantine or reject"),
    ({"mail_domains": [{"name": "one.test", "spf": "v=spf1 " + " ".join(f"include:s{i}.test" for i in range(11))
                        + " -all"}]}, "needs 11 DNS lookups; RFC 7208 allows 10"),
    ({"mail_dkim_signer": "opendkim"}, "mail_dkim_signer must be one of: dkimproxy, rspamd"),
    ({"mail_srs_rotation": {"grace": "2d"}},
     "mail_srs_rotation: grace (172800 s) is shorter than the SRS address lifetime (opensmtpd_srs_ttl, 345600 s)"),
    ({"mail_dkim_rotation": {"grace": "1d", "lead": "3d"}}, "mail_dkim_rotation: grace (86400 s) must be longer"),
])
def test_bad_input_fails_before_anything_changes(overrides, message, tmp_path):
    extra_file = tmp_path / "bad.json"
    extra_file.write_text(json.dumps(overrides))
    recap, output = run_site("-e", f"@{extra_file}", succeed=False)
    assert all(changed == 0 and failed == 1 for changed, unreachable, failed in recap.values()), recap
    assert "Validate the site model" in output and "PLAY [Mail servers]" not in output
    assert message in output
    assert CLEAR_TEXT not in output


def test_certificate_not_covering_a_policy_name_fails_before_anything_changes(host_vars, tmp_path):
    extra_file = tmp_path / "four.json"
    extra_file.write_text(json.dumps({"mail_domains": host_vars["mail_domains"]
                                      + [{"name": "four.test", "mta_sts": {"mode": "testing"}}]}))
    recap, output = run_site("-e", f"@{extra_file}", succeed=False)
    assert all(changed == 0 and failed == 1 for changed, unreachable, failed in recap.values()), recap
    assert "PLAY [Mail servers]" not in output
    assert "mta_sts_tls_certificate /etc/ssl/certs/mail.pem does not cover mta-sts.four.test" in output


def signer() -> str:
    return mail_hosts()[0].ansible.get_variables()["mail_dkim_signer"]


@pytest.mark.parametrize("overrides, message", [
    ({"dkimproxy_archive_sha256": "0" * 64},
     "sha256 is a245ad2c82b140d9cb5bf7dcd2caf14a7ad5f84e2d8c6758424a874469b0d32b, not dkimproxy_archive_sha256 000"),
    ({"dkimproxy_archive_src": "/nonexistent/dkimproxy-1.4.1.tar.gz"}, "no such file on the controller"),
])
def test_bad_dkimproxy_archive_fails_before_anything_changes(overrides, message, tmp_path):
    if signer() != "dkimproxy":
        pytest.skip("the scenario's signer is not dkimproxy")
    extra_file = tmp_path / "bad.json"
    extra_file.write_text(json.dumps(overrides))
    recap, output = run_site("-e", f"@{extra_file}", succeed=False)
    assert all(changed == 0 and failed == 1 for changed, unreachable, failed in recap.values()), recap
    assert "PLAY [Mail servers]" not in output and message in output


def test_rspamd_signer_is_refused_on_debian_12():
    debian12 = [h for h in mail_hosts() if h.system_info.release.startswith("12")]
    if not debian12:
        pytest.skip("no Debian 12 host in this scenario")
    recap, output = run_site("-e", "mail_dkim_signer=rspamd", "--limit", ",".join(
        h.backend.host for h in debian12), succeed=False)
    assert all(changed == 0 and failed == 1 for changed, unreachable, failed in recap.values()), recap
    assert "rspamd cannot sign on Debian 12: its opensmtpd-filter-rspamd does not pass the authenticated user" \
        in output and "PLAY [Mail servers]" not in output


def test_dkim_key_below_1024_bits_is_refused_and_the_keys_stay(tmp_path):
    variable = f"{signer()}_dkim_rsa_bits"
    rings = {h.backend.host: h.check_output("sha256sum /var/lib/opendove/dkim/*") for h in mail_hosts()}
    recap, output = run_site("-e", f"{variable}=512", succeed=False)
    assert all(changed == 0 and failed == 1 for changed, unreachable, failed in recap.values()), recap
    assert "at least 1024 bits" in output
    assert rings == {h.backend.host: h.check_output("sha256sum /var/lib/opendove/dkim/*") for h in mail_hosts()}


@pytest.mark.parametrize("overrides, config, service", [
    ({"opensmtpd_max_message_size": "lots"}, "/etc/smtpd.conf", "opensmtpd"),
    ({"dovecot_extra_config": "no_such_setting = yes"}, "/etc/dovecot/dovecot.conf", "dovecot"),
])
def test_config_failing_validation_never_replaces_the_working_one(overrides, config, service, tmp_path, tls):
    hosts = mail_hosts()
    before = {h.backend.host: (h.file(config).sha256sum, main_pids(h)) for h in hosts}
    extra_file = tmp_path / "bad.json"
    extra_file.write_text(json.dumps(overrides))
    recap, output = run_site("-e", f"@{extra_file}", succeed=False)
    assert "failed to validate" in output
    assert all(failed == 1 for changed, unreachable, failed in recap.values()), recap
    variables = hosts[0].ansible.get_variables()
    for h in hosts:
        assert (h.file(config).sha256sum, main_pids(h)) == before[h.backend.host]
        assert h.service(service).is_running
        # Still serving: a message goes through submission, LMTP and IMAP.
        msg = new_message("alice@one.test", "bob@two.test")
        submit(host_address(h), 587, tls, "alice@one.test", variables["test_passwords"]["alice@one.test"], msg)
        assert fetch(host_address(h), tls, "bob@two.test", variables["test_passwords"]["bob@two.test"],
                     msg["Subject"])


@pytest.fixture(scope="module")
def rollout(tls):
    """Store a message on every host, record messages and daemon PIDs, then re-run site.yml with a third
    domain and its account added to the inventory."""
    hosts = mail_hosts()
    variables = hosts[0].ansible.get_variables()
    rollout_vars = variables["test_rollout"]
    before = {}
    for h in hosts:
        address = host_address(h)
        msg = new_message("someone@elsewhere.test", "alice@one.test")
        deliver_inbound(address, msg, ["alice@one.test"])
        fetch(address, tls, "alice@one.test", variables["test_passwords"]["alice@one.test"], msg["Subject"])
        before[h.backend.host] = {"messages": message_files(h), "pids": main_pids(h)}
    extra = {
        "mail_domains": variables["mail_domains"] + [{"name": rollout_vars["domain"], "catchall": False}],
        "mail_accounts": variables["mail_accounts"]
        + [{"address": rollout_vars["address"], "password_hash": rollout_vars["password_hash"]}],
    }
    extra_file = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "rollout-vars.json"
    extra_file.write_text(json.dumps(extra))
    recap = run_site("-e", f"@{extra_file}")[0]
    return {"before": before, "recap": recap, "new": rollout_vars}


def test_rollout_converges_everywhere(rollout):
    assert all(unreachable == failed == 0 for changed, unreachable, failed in rollout["recap"].values())


def test_rollout_restarts_no_daemon(host, rollout):
    assert main_pids(host) == rollout["before"][host.backend.host]["pids"]


def test_rollout_keeps_every_stored_message(host, rollout):
    before = rollout["before"][host.backend.host]["messages"]
    assert before
    assert before <= message_files(host)


def test_rollout_new_domain_receives_and_sends(host_vars, address, tls, rollout):
    new = rollout["new"]
    inbound = new_message("someone@elsewhere.test", new["address"])
    deliver_inbound(address, inbound, [new["address"]])
    assert fetch(address, tls, new["address"], new["password"], inbound["Subject"])
    outbound = new_message(new["address"], "alice@one.test")
    submit(address, 587, tls, new["address"], new["password"], outbound)
    assert fetch(address, tls, "alice@one.test", host_vars["test_passwords"]["alice@one.test"], outbound["Subject"])
