"""Every daemon comes back after kill -9, and so does smtpd after one of its filters is killed (smtpd then exits
with status 0, which only Restart=always covers); mail submitted afterwards is delivered. A message dkimproxy
is taking in when its main process is killed or it is stopped is still taken in, once, and Dovecot's
workers go on when its master is killed. A deliberate stop stays stopped, and a configuration that cannot
start stops after the start limit instead of looping."""

from __future__ import annotations

import imaplib
import json
import shlex
import smtplib
import uuid

import pytest
from conftest import eventually, fetch, new_message, outside_message, sink_files, submit

pytestmark = pytest.mark.pair

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


# Runs on the mail host: an SMTP transaction is left in its data while a command runs, then finished three
# seconds later (past the restart delay); prints the reply to the end of the data as JSON.
_HALF_DONE = r"""
import json, smtplib, subprocess, sys, time
where, command, sender, recipient, message_id = sys.argv[1:6]
client = smtplib.SMTP(*where.rsplit(":", 1))
client.ehlo("half-done.test")
client.mail(sender)
client.rcpt(recipient)
client.docmd("DATA")
client.send(f"From: {sender}\r\nTo: {recipient}\r\nSubject: {message_id}\r\nMessage-ID: <{message_id}>\r\n"
            f"\r\nhalf done when the daemon went\r\n".encode())
subprocess.run(command, shell=True, check=True)
time.sleep(3)
client.send(b".\r\n")
code, text = client.getreply()
print(json.dumps([code, text.decode()]))
"""


def half_done(host, where: str, command: str, sender: str, recipient: str, message_id: str) -> int:
    """The reply code to a message whose data was under way while the command ran on the host."""
    result = host.run(shlex.join(["python3", "-c", _HALF_DONE, where, command, sender, recipient, message_id]))
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)[0]


def test_dovecot_workers_finish_their_work_when_the_master_is_killed(host, host_vars, address, tls):
    """KillMode=process: systemd leaves Dovecot's workers alone when the master dies, and each finishes what it is
    doing. An LMTP delivery would otherwise be killed after storing the mail but before marking it for the
    duplicate check and answering smtpd, which then delivers it a second time. Seen here on an IMAP session,
    which can be held open across the kill: it goes on working after the new master is up."""
    password = host_vars["test_passwords"]["bob@two.test"]
    with imaplib.IMAP4_SSL(address, 993, ssl_context=tls, timeout=20) as imap:
        imap.login("bob@two.test", password)
        imap.select("INBOX", readonly=True)
        old = main_pid(host, "dovecot")
        host.run(f"kill -9 {old}")
        eventually(lambda: is_back(host, "dovecot", old), "dovecot is not back after kill -9", timeout=30)
        assert imap.noop()[0] == "OK"
        assert imap.search(None, "ALL")[0] == "OK"


@pytest.mark.parametrize("command", ["kill -9 $(systemctl show dkimproxy-out -p MainPID --value)",
                                     "systemctl stop dkimproxy-out"])
def test_a_message_dkimproxy_is_taking_in_survives_its_death_and_stop(host, command):
    """The child serving the connection finishes it (KillMode=process and a start that waits for it; a stop is
    Net::Server's slow shutdown): cut off, smtpd would send the message again after the reinjection had queued
    it, and the recipient would get it twice."""
    if host.run("systemctl cat dkimproxy-out").rc != 0:
        pytest.skip("dkimproxy is not the signer on this host")
    message_id = f"{uuid.uuid4().hex}@one.test"
    old = main_pid(host, "dkimproxy-out")
    # systemctl stop waits for the slow shutdown: it runs in the background, and the start after it.
    if command.startswith("systemctl"):
        command = f"({command}; systemctl start dkimproxy-out) >/dev/null 2>&1 &"
    code = half_done(host, "127.0.0.1:10027", command, "alice@one.test", "someone@outside.test", message_id)
    assert code == 250
    eventually(lambda: is_back(host, "dkimproxy-out", old), "dkimproxy is not back", timeout=30)
    outside_message(message_id)
    assert len(sink_files(message_id)) == 1


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
