"""The playbook as users run it: --check on a converged host changes nothing, bad input stops it before any
change, a config that fails validation never replaces the working one, a spool smtpd refuses is repaired, and
a multi-domain rollout (a third domain and its account added to the inventory) works without touching the
other domains."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import (deliver_inbound, fetch, host_address, mail_hosts, new_message, recap_of, run_playbook,
                      submit)


def run_site(*args: str, succeed: bool = True) -> tuple[dict[str, tuple[int, int, int]], str]:
    """Run playbooks/site.yml against the scenario's hosts: (changed, unreachable, failed) per host, and
    the output."""
    output = run_playbook("playbooks/site.yml", *args, succeed=succeed)
    return recap_of(output), output


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


def test_bad_input_stops_every_host_before_anything_changes():
    """The whole site.yml against the real hosts, with a TLS key missing on them: the validation play stops every
    host, and the play that changes them never starts. (Every other bad input, each with its message:
    tests/unit/roles/test_site_validation.py, one run of the same play.)"""
    recap, output = run_site("-e", json.dumps({"mail_tls_private_key": "/etc/ssl/private/missing.key",
                                               "mta_sts_tls_private_key": "/etc/ssl/private/mail.key"}), succeed=False)
    assert all(changed == 0 and failed == 1 for changed, unreachable, failed in recap.values()), recap
    assert "Validate the site model" in output and "PLAY [Mail servers]" not in output
    assert "missing on the host (variable: path): {'mail_tls_private_key': '/etc/ssl/private/missing.key'}" in output


def test_rspamd_signer_is_refused_on_debian_12():
    debian12 = [h for h in mail_hosts() if h.system_info.release.startswith("12")]
    if not debian12:
        pytest.skip("no Debian 12 host in this scenario")
    recap, output = run_site("-e", "mail_dkim_signer=rspamd", "--limit", ",".join(
        h.backend.host for h in debian12), succeed=False)
    assert all(changed == 0 and failed == 1 for changed, unreachable, failed in recap.values()), recap
    assert "rspamd cannot sign on Debian 12: its opensmtpd-filter-rspamd does not pass the authenticated user" \
        in output and "PLAY [Mail servers]" not in output


@pytest.mark.pair
def test_dkim_key_below_1024_bits_is_refused_and_the_keys_stay():
    rings = {h.backend.host: h.check_output("sha256sum /var/lib/opendove/dkim/*") for h in mail_hosts()}
    # Each host's signer (the pair scenario has both).
    recap, output = run_site("-e", "rspamd_dkim_rsa_bits=512", "-e", "dkimproxy_dkim_rsa_bits=512", succeed=False)
    assert all(changed == 0 and failed == 1 for changed, unreachable, failed in recap.values()), recap
    assert "at least 1024 bits" in output
    assert rings == {h.backend.host: h.check_output("sha256sum /var/lib/opendove/dkim/*") for h in mail_hosts()}


@pytest.mark.pair
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


@pytest.mark.pair
def test_a_spool_an_interrupted_first_start_left_unusable_is_repaired(tls, tmp_path):
    """smtpd makes its spool directories with no permissions and then sets them; a first start killed in between
    leaves a spool it refuses at every later start ("/var/spool/smtpd must be rwx--x--x"). The opensmtpd role
    gives the spool back the owners and modes smtpd checks, and smtpd serves again."""
    hosts = mail_hosts()
    for h in hosts:
        h.run("systemctl stop opensmtpd")
        # The state smtpd's ckdir() leaves when killed between mkdir() and chmod(), and a wrong owner.
        h.run("chmod 0 /var/spool/smtpd /var/spool/smtpd/offline && chown root:root /var/spool/smtpd/purge")
    # The opensmtpd role alone, as site.yml runs it: the rest of site.yml has nothing to do here.
    playbook = tmp_path / "opensmtpd.yml"
    playbook.write_text(json.dumps([{"name": "OpenSMTPD", "hosts": "mail",
                                     "roles": [{"role": "opendove.mailserver.opensmtpd"}]}]))
    recap = recap_of(run_playbook(str(playbook)))
    assert all(changed > 0 and unreachable == failed == 0 for changed, unreachable, failed in recap.values()), recap
    variables = hosts[0].ansible.get_variables()
    for h in hosts:
        assert h.file("/var/spool/smtpd").mode == 0o711
        assert h.file("/var/spool/smtpd/offline").mode == 0o770
        assert h.file("/var/spool/smtpd/purge").user != "root"
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


@pytest.mark.pair
def test_rollout_converges_everywhere(rollout):
    assert all(unreachable == failed == 0 for changed, unreachable, failed in rollout["recap"].values())


@pytest.mark.pair
def test_rollout_restarts_no_daemon(host, rollout):
    assert main_pids(host) == rollout["before"][host.backend.host]["pids"]


@pytest.mark.pair
def test_rollout_keeps_every_stored_message(host, rollout):
    before = rollout["before"][host.backend.host]["messages"]
    assert before
    assert before <= message_files(host)


@pytest.mark.pair
def test_rollout_new_domain_receives_and_sends(host_vars, address, tls, rollout):
    new = rollout["new"]
    inbound = new_message("someone@elsewhere.test", new["address"])
    deliver_inbound(address, inbound, [new["address"]])
    assert fetch(address, tls, new["address"], new["password"], inbound["Subject"])
    outbound = new_message(new["address"], "alice@one.test")
    submit(address, 587, tls, new["address"], new["password"], outbound)
    assert fetch(address, tls, "alice@one.test", host_vars["test_passwords"]["alice@one.test"], outbound["Subject"])
