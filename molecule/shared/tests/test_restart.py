"""Every daemon comes back after kill -9, and so does smtpd after one of its filters is killed (smtpd then exits
with status 0, which only Restart=always covers); mail submitted afterwards is delivered. A deliberate stop
stays stopped, and a configuration that cannot start stops after the start limit instead of looping."""

from __future__ import annotations

import smtplib

import pytest
from conftest import eventually, fetch, new_message, outside_message, submit

SERVICES = ["opensmtpd", "dovecot", "rspamd", "nginx", "fail2ban", "dkimproxy-out"]
# smtpd's filter processes, by the start of their command line (the guard's also names filter-rspamd).
FILTERS = ["/usr/bin/python3 -I /usr/local/sbin/opendove-filter-senders",
           "/usr/bin/python3 -I /usr/local/sbin/opendove-filter-guard", "/usr/libexec/opensmtpd/filter-rspamd"]


@pytest.fixture(autouse=True)
def fresh_start_limit(host):
    """Each test starts with the start limit's count at zero: earlier tests and playbook runs restarted the
    daemons too, and a test must not fail because of their starts."""
    host.run(f"systemctl reset-failed {' '.join(SERVICES)}")


def main_pid(host, service: str) -> str:
    return host.check_output(f"systemctl show {service} -p MainPID --value")


def is_back(host, service: str, old_pid: str) -> bool:
    pid = main_pid(host, service)
    return pid not in ("0", old_pid) and host.run(f"systemctl is-active --quiet {service}").rc == 0


def mail_flows(host_vars, address, tls) -> None:
    """A submission to a local user and to the outside world is delivered (retried while the pipeline wakes up:
    Rspamd, for one, answers a few seconds after its start)."""
    passwords = host_vars["test_passwords"]
    msg = new_message("alice@one.test", "bob@two.test")

    def submitted() -> bool:
        try:
            submit(address, 587, tls, "alice@one.test", passwords["alice@one.test"], msg,
                   ["bob@two.test", "someone@outside.test"])
            return True
        except (smtplib.SMTPException, OSError):
            return False

    eventually(submitted, "no submission accepted")
    assert fetch(address, tls, "bob@two.test", passwords["bob@two.test"], msg["Subject"])
    assert outside_message(msg["Message-ID"])


@pytest.mark.parametrize("service", SERVICES)
def test_a_daemon_killed_comes_back_and_mail_flows(host, host_vars, address, tls, service):
    if host.run(f"systemctl cat {service}").rc != 0:
        pytest.skip(f"{service} is not on this host")
    old = main_pid(host, service)
    host.run(f"kill -9 {old}")
    eventually(lambda: is_back(host, service, old), f"{service} is not back after kill -9", timeout=30)
    mail_flows(host_vars, address, tls)


@pytest.mark.parametrize("word", FILTERS)
def test_smtpd_comes_back_after_a_filter_is_killed(host, host_vars, address, tls, word):
    pids = host.run(f"pgrep -f -- '^{word}'").stdout.split()
    if not pids:
        pytest.skip(f"no {word} process on this host")
    old = main_pid(host, "opensmtpd")
    host.run(f"kill -9 {pids[0]}")
    eventually(lambda: is_back(host, "opensmtpd", old), f"smtpd is not back after {word} was killed", timeout=30)
    mail_flows(host_vars, address, tls)


def test_a_deliberate_stop_stays_stopped(host):
    host.run("systemctl stop opensmtpd")
    try:
        # Longer than the restart delay (2 s): a restart would have happened by now.
        host.run("sleep 5")
        assert host.run("systemctl is-active opensmtpd").stdout.strip() == "inactive"
    finally:
        host.run("systemctl start opensmtpd")
    assert host.service("opensmtpd").is_running


def test_a_configuration_that_cannot_start_ends_failed_instead_of_looping(host):
    """smtpd started on a missing configuration file fails; systemd tries again at most up to the start limit
    (Debian 13's systemd restarts failed starts, Debian 12's does not) and then leaves it failed."""
    dropin = "/run/systemd/system/opensmtpd.service.d/zz-test-broken.conf"
    host.run(f"mkdir -p {dropin.rsplit('/', 1)[0]} && printf '[Service]\\nExecStart=\\nExecStart=/usr/sbin/smtpd "
             f"-f /nonexistent/smtpd.conf\\n' > {dropin} && systemctl daemon-reload")
    restarts = int(host.check_output("systemctl show opensmtpd -p NRestarts --value"))
    try:
        host.run("systemctl restart opensmtpd")

        def settled_failed() -> bool:
            # Failed now and still failed after more than two restart delays: no restart is pending.
            return (host.check_output("systemctl show opensmtpd -p ActiveState --value") == "failed"
                    and host.run("sleep 5").rc == 0
                    and host.check_output("systemctl show opensmtpd -p ActiveState --value") == "failed")

        eventually(settled_failed, "smtpd on a broken configuration did not end failed", timeout=90)
        burst = int(host.check_output("systemctl show opensmtpd -p StartLimitBurst --value"))
        assert int(host.check_output("systemctl show opensmtpd -p NRestarts --value")) - restarts <= burst
    finally:
        host.run(f"rm -f {dropin} && systemctl daemon-reload && systemctl reset-failed opensmtpd && "
                 "systemctl start opensmtpd")
    assert host.service("opensmtpd").is_running
