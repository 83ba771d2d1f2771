"""Outbound through a smarthost (mail_relayhost): mail leaves through the relay provider's container, which
requires AUTH inside TLS, and reaches the outside world still DKIM-signed. A wrong password keeps mail queued,
never lost or bounced at once, and a fixed password delivers it without a restart; the password never shows
in Ansible's output."""

from __future__ import annotations

import email
import json
import uuid

import pytest
from conftest import eventually, new_message, outside_message, run_playbook, sink_files, submit_from_outside, verified

QUEUE_TIMEOUT = 60  # seconds for the failed attempt to show in the log
RETRY_TIMEOUT = 120  # seconds for queued mail to leave once the password is fixed and a retry asked for


@pytest.fixture(scope="module")
def relayhost(host_vars):
    if not host_vars.get("mail_relayhost"):
        pytest.skip("the scenario sends directly, without a smarthost")
    return host_vars["mail_relayhost"]


def smtpd_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value opensmtpd")


def test_secrets_table_is_readable_by_root_and_smtpd_only(host, relayhost):
    secrets = host.file("/etc/smtpd/secrets")
    assert (secrets.user, secrets.group, secrets.mode) == ("root", "opensmtpd", 0o640)
    assert secrets.content_string.splitlines()[-1] == f"smarthost {relayhost['username']}:{relayhost['password']}"


def test_outbound_mail_goes_through_the_smarthost_and_stays_signed(host_vars, address, relayhost, dnsfunc):
    msg = new_message("alice@one.test", f"relay-{uuid.uuid4().hex[:8]}@outside.test")
    assert submit_from_outside(address, "alice@one.test", host_vars["test_passwords"]["alice@one.test"],
                               msg)["code"] == 250
    raw = outside_message(msg["Message-ID"]).encode()
    received = email.message_from_bytes(raw).get_all("Received")
    # The sink's own Received line says the relay handed the message over, after AUTH inside TLS.
    assert f"from {relayhost['host']}" in received[0] and "ESMTPSA" in received[1], received[:2]
    assert {d for d, s, a in verified(raw, dnsfunc)} == {"one.test"}


def test_wrong_password_keeps_mail_queued_until_it_is_fixed(host, host_vars, address, relayhost, tmp_path):
    pid = smtpd_pid(host)
    wrong = dict(relayhost, password="not-the-" + relayhost["password"])
    extra = tmp_path / "wrong.json"
    extra.write_text(json.dumps({"mail_relayhost": wrong}))
    outputs = [run_playbook("playbooks/site.yml", "--diff", "-e", f"@{extra}")]

    recipient = f"queued-{uuid.uuid4().hex[:8]}@outside.test"
    msg = new_message("alice@one.test", recipient)
    assert submit_from_outside(address, "alice@one.test", host_vars["test_passwords"]["alice@one.test"],
                               msg)["code"] == 250
    # The smarthost refused the login: the reason is in smtpd's log, the message in the queue (not bounced).
    auth_log = "journalctl -u opensmtpd --since -2min --no-pager | grep -i auth || true"
    eventually(lambda: "535" in host.check_output(auth_log), "no refused AUTH at the smarthost in the log",
               QUEUE_TIMEOUT)
    assert recipient in host.check_output("smtpctl show queue")
    assert sink_files(msg["Message-ID"]) == []

    outputs.append(run_playbook("playbooks/site.yml", "--diff"))
    # The next attempt now, as an operator would ask for it, instead of at smtpd's next retry (minutes away).
    host.check_output("smtpctl schedule all")
    outside_message(msg["Message-ID"], timeout=RETRY_TIMEOUT)
    assert recipient not in host.check_output("smtpctl show queue")
    assert smtpd_pid(host) == pid, "a password change must not restart smtpd"
    for output in outputs:
        assert relayhost["password"] not in output and wrong["password"] not in output
