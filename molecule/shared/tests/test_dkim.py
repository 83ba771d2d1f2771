"""Outgoing mail is DKIM-signed for the From domain by the scenario's signer and verifies with dkimpy against
the records dns_records.yml published on the scenario's DNS server. Submissions come from the outside world's
container, so nothing is signed because it comes from a local address."""

from __future__ import annotations

import email
import re
import smtplib
import time
import uuid

import pytest
from conftest import (
    deliver_inbound,
    eventually,
    fetch,
    key_ring,
    new_message,
    outside_message,
    signatures,
    sink_files,
    submit_from_outside,
    verified,
)

DISABLED_ROUTE_TIMEOUT = 120  # seconds: smtpd's disabled route (15 s) coming back, plus delivery
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def active_selectors(host, domain: str) -> set[str]:
    return {k["selector"] for k in key_ring(host, domain)["keys"] if k["state"] == "active"}


def outside_recipient() -> str:
    return f"dkim-{uuid.uuid4().hex[:8]}@outside.test"


@pytest.mark.parametrize("login", ["alice@one.test", "bob@two.test"])
def test_submission_leaves_signed_for_the_from_domain(host, host_vars, address, dnsfunc, login):
    msg = new_message(login, outside_recipient())
    assert submit_from_outside(address, login, host_vars["test_passwords"][login], msg)["code"] == 250
    raw = outside_message(msg["Message-ID"]).encode()
    domain = login.split("@")[1]
    signed = verified(raw, dnsfunc)
    assert signed and {d for d, s, a in signed} == {domain}, signed
    assert {s for d, s, a in signed} == active_selectors(host, domain)
    expected = {"rsa-sha256"} | ({"ed25519-sha256"} if host_vars["mail_dkim_signer"] == "rspamd" else set())
    assert {a for d, s, a in signed} == expected


def test_sender_header_of_own_alias_is_signed_for_a_domain_the_user_owns(host_vars, address, dnsfunc):
    """dkimproxy picks its key from the Sender header: an own alias there is fine, and signs for its domain."""
    msg = new_message("alice@one.test", outside_recipient())
    msg["Sender"] = "postmaster@one.test"
    assert submit_from_outside(address, "alice@one.test", host_vars["test_passwords"]["alice@one.test"],
                               msg)["code"] == 250
    assert {d for d, s, a in verified(outside_message(msg["Message-ID"]).encode(), dnsfunc)} == {"one.test"}


@pytest.mark.parametrize("from_header, sender_header, envelope, code, reason", [
    ("bob@two.test", None, "alice@one.test", 550, "From address bob@two.test is not one you may send as"),
    ("alice@one.test", "carol@two.test", "alice@one.test", 550,
     "Sender address carol@two.test is not one you may send as"),
    ("alice@one.test", "someone@outside.test", "alice@one.test", 550, "Sender address someone@outside.test"),
    ("alice@one.test", None, "bob@two.test", 530, "Sender rejected"),
])
def test_foreign_from_sender_or_envelope_is_refused(host_vars, address, from_header, sender_header, envelope,
                                                    code, reason):
    msg = new_message(from_header, outside_recipient())
    if sender_header:
        msg["Sender"] = sender_header
    answer = submit_from_outside(address, "alice@one.test", host_vars["test_passwords"]["alice@one.test"], msg,
                                 sender=envelope)
    assert answer["code"] == code, answer
    assert reason is None or reason in answer["error"]
    time.sleep(1)
    assert sink_files(msg["Message-ID"]) == []


def test_mail_between_local_domains_is_delivered_here(host, host_vars, address, tls):
    """Local domains are delivered before the signer stage: one OpenSMTPD hop, no trip through dkimproxy."""
    msg = new_message("alice@one.test", "bob@two.test")
    assert submit_from_outside(address, "alice@one.test", host_vars["test_passwords"]["alice@one.test"],
                               msg)["code"] == 250
    raw = fetch(address, tls, "bob@two.test", host_vars["test_passwords"]["bob@two.test"], msg["Subject"])
    received = email.message_from_bytes(raw).get_all("Received")
    assert not any("127.0.0.1" in r for r in received), received
    if host_vars["mail_dkim_signer"] == "dkimproxy":
        assert not signatures(raw)


def test_signer_down_keeps_mail_from_leaving_unsigned(host, host_vars, address, dnsfunc):
    """dkimproxy down: the message waits in OpenSMTPD's queue, then leaves signed. Rspamd down: the submission
    is refused with a temporary error (the client keeps it), and succeeds signed once Rspamd is back."""
    login, password = "bob@two.test", host_vars["test_passwords"]["bob@two.test"]
    service, port = ("dkimproxy-out", 10027) if host_vars["mail_dkim_signer"] == "dkimproxy" else ("rspamd", 11333)
    msg = new_message(login, outside_recipient())
    host.run_test(f"systemctl stop {service}")
    try:
        answer = submit_from_outside(address, login, password, msg)
        if service == "rspamd":
            assert answer["code"] in (421, 451, 0), answer
        else:
            assert answer["code"] == 250, answer
            # Held while the signer is down, whether smtpd shows it pending or in flight (waiting for the route).
            time.sleep(3)
            assert msg["To"] in host.check_output("smtpctl show queue")
        assert sink_files(msg["Message-ID"]) == []
    finally:
        host.run_test(f"systemctl start {service}")
    eventually(lambda: host.socket(f"tcp://127.0.0.1:{port}").is_listening, f"{service} does not listen on {port}")
    if service == "rspamd":
        assert submit_from_outside(address, login, password, msg)["code"] == 250
        raw = outside_message(msg["Message-ID"]).encode()
    else:
        # smtpd disables a failed route for 15 s and then waits for the envelope's next retry (minutes later):
        # ask for the retry, as an operator would after starting the signer, until the route is back.
        def retried() -> list[str]:
            host.run_test("smtpctl schedule all")
            return sink_files(msg["Message-ID"])

        eventually(retried, "the queued message did not leave once the signer was back", DISABLED_ROUTE_TIMEOUT)
        raw = outside_message(msg["Message-ID"]).encode()
    assert {d for d, s, a in verified(raw, dnsfunc)} == {"two.test"}


# A client that greets with its name, and one that greets with a loopback address (scored past Rspamd's add
# header threshold, 6, by Rspamd 3.x's default scores).
@pytest.mark.parametrize("helo", ["mx.outside.test", "127.0.0.1"])
def test_inbound_mail_is_scanned_by_rspamd(host, host_vars, address, tls, helo):
    msg = new_message("someone@outside.test", "alice@one.test")
    deliver_inbound(address, msg, ["alice@one.test"], helo)
    raw = fetch(address, tls, "alice@one.test", host_vars["test_passwords"]["alice@one.test"], msg["Subject"])
    results = email.message_from_bytes(raw).get_all("Authentication-Results") or []
    assert any(r.startswith(host_vars["mail_hostname"]) for r in results), raw[:2000]
    # The scan's log line may be written after the message is delivered.
    scan_log = eventually(lambda: host.run(f"grep -F -- '{msg['Message-ID']}' /var/log/rspamd/rspamd.log").stdout,
                          "no scan of the message in rspamd.log")
    # The verdict reaches the mailbox: Rspamd's action is one that delivers (a client of the test network is not
    # "local" to Rspamd, so it is scored as any other), and filter-rspamd marks the message as spam exactly when
    # the action is add header (X-Spam, and X-Spam-Status with the score).
    verdict = re.search(r"rspamd_task_write_log: .*\(default: [FT] \(([a-z ]+)\): \[(-?[0-9.]+)/", scan_log)
    assert verdict and verdict[1] in ("no action", "add header"), scan_log
    delivered = email.message_from_bytes(raw)
    if verdict[1] == "add header":
        assert delivered["X-Spam"] == "yes", scan_log
        status = re.match(r"Yes, score=(-?[0-9.]+) required=", delivered["X-Spam-Status"] or "")
        # The log rounds the score down to two places (6.79 for 6.799999, which the header gives as 6.800).
        assert status and abs(float(status[1]) - float(verdict[2])) < 0.011, (delivered["X-Spam-Status"], scan_log)
    else:
        assert delivered["X-Spam"] is None and delivered["X-Spam-Status"] is None, scan_log


def test_gtube_is_rejected_inbound(address):
    msg = new_message("someone@outside.test", "alice@one.test")
    msg.set_content(f"Hello,\n\nthis is the spam test string:\n{GTUBE}\n\nRegards\n")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        deliver_inbound(address, msg, ["alice@one.test"])
    assert refused.value.smtp_code >= 500
