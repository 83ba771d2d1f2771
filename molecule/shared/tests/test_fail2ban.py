"""Brute-force protection: wrong passwords on submission get the sender's address banned from the mail ports
(fail2ban, nftables) while mail from other addresses keeps flowing, and the ban ends after its time; failed
IMAP logins are counted by the Dovecot jail (one per attempt)."""

from __future__ import annotations

import base64
import imaplib
import smtplib
import socket

import pytest
from conftest import eventually, new_message, outside_host

pytestmark = pytest.mark.pair


def jail(host, name: str, key: str) -> int:
    return int(host.check_output(f"fail2ban-client get {name} {key}"))


def total_failed(host, name: str) -> int:
    status = host.check_output(f"fail2ban-client status {name}")
    return int(next(line for line in status.splitlines() if "Total failed" in line).split()[-1])


def can_connect(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=3).close()
        return True
    except OSError:
        return False


def test_wrong_passwords_ban_the_address_until_the_ban_ends(host, address, tls):
    runner = host.check_output("ip route show default").split()[2]  # how the host sees this test runner
    host.run(f"fail2ban-client set opendove-smtpd unbanip {runner}")
    try:
        ban_and_unban(host, address, tls, runner)
    finally:
        # Whatever failed, later tests must not find the runner banned.
        host.run(f"fail2ban-client set opendove-smtpd unbanip {runner}")


def ban_and_unban(host, address, tls, runner: str) -> None:
    maxretry, bantime = jail(host, "opendove-smtpd", "maxretry"), jail(host, "opendove-smtpd", "bantime")
    attempts = 0

    def banned() -> bool:
        return runner in host.check_output("fail2ban-client status opendove-smtpd")

    # Sessions of wrong passwords (smtpd ends a session after a few), until the address is banned.
    while attempts < 3 * maxretry and not banned():
        try:
            with smtplib.SMTP(address, 587, timeout=10) as client:
                client.starttls(context=tls)
                client.ehlo("attacker.elsewhere.test")
                while attempts < 3 * maxretry and not banned():
                    attempts += 1
                    wrong = base64.b64encode(f"\0alice@one.test\0wrong-{attempts}".encode()).decode()
                    assert client.docmd("AUTH", f"PLAIN {wrong}")[0] == 535
        except (smtplib.SMTPException, OSError):
            pass  # smtpd ended the session, or the ban cut it
    assert banned(), f"{runner} not banned after {attempts} wrong passwords"
    assert attempts <= maxretry + 2, f"banned only after {attempts} wrong passwords (maxretry {maxretry})"
    assert not can_connect(address, 587) and not can_connect(address, 993)

    # Another address (the outside world's) is still served: its message is accepted.
    msg = new_message("someone@outside.test", "bob@two.test")
    refused = outside_host().check_output(
        f"python3 -c \"import smtplib; print(smtplib.SMTP('{address}', 25, timeout=20).sendmail("
        f"'someone@outside.test', ['bob@two.test'], b'From: someone@outside.test\\r\\nSubject: {msg['Subject']}"
        f"\\r\\n\\r\\nduring a ban\\r\\n'))\"")
    assert refused == "{}"

    eventually(lambda: can_connect(address, 587), f"{runner} still banned after {bantime} s", timeout=bantime + 30)


def test_failed_imap_logins_are_counted_one_per_attempt(host, address, tls):
    before = total_failed(host, "opendove-dovecot")
    with imaplib.IMAP4_SSL(address, 993, ssl_context=tls, timeout=60) as imap:
        for attempt in range(2):
            try:
                imap.login("alice@one.test", f"wrong-{attempt}")
            except imaplib.IMAP4.error:
                pass
    eventually(lambda: total_failed(host, "opendove-dovecot") >= before + 2,
               "the Dovecot jail did not count two failed logins", timeout=30)
    host.run("sleep 3")
    assert total_failed(host, "opendove-dovecot") == before + 2
