"""Real SMTP sessions from the test runner: submission, inbound delivery, and everything that must be refused."""

import base64
import smtplib

import pytest
from conftest import deliver_inbound, fetch, new_message, submit


@pytest.mark.parametrize("port", [587, 465])
def test_submission_delivers_to_both_domains(host_vars, address, tls, port):
    """alice (one.test) writes to bob (two.test) and bob writes to alice; each reads it over IMAPS."""
    passwords = host_vars["test_passwords"]
    for sender, recipient in [("alice@one.test", "bob@two.test"), ("bob@two.test", "alice@one.test")]:
        msg = new_message(sender, recipient)
        submit(address, port, tls, sender, passwords[sender], msg)
        raw = fetch(address, tls, recipient, passwords[recipient], msg["Subject"])
        assert msg["Message-ID"].encode() in raw


def test_inbound_delivery_without_auth_for_local_domain(host_vars, address, tls):
    msg = new_message("someone@elsewhere.test", "alice@one.test")
    deliver_inbound(address, msg, ["alice@one.test"])
    raw = fetch(address, tls, "alice@one.test", host_vars["test_passwords"]["alice@one.test"], msg["Subject"])
    assert b"someone@elsewhere.test" in raw


def test_alias_delivers_to_every_target(host_vars, address, tls):
    passwords = host_vars["test_passwords"]
    msg = new_message("someone@elsewhere.test", "info@two.test")
    deliver_inbound(address, msg, ["info@two.test"])
    for target in ("bob@two.test", "carol@two.test"):
        assert msg["Message-ID"].encode() in fetch(address, tls, target, passwords[target], msg["Subject"])


def test_catchall_domain_delivers_unknown_user_to_catchall(host_vars, address, tls):
    msg = new_message("someone@elsewhere.test", "nobody-here@two.test")
    deliver_inbound(address, msg, ["nobody-here@two.test"])
    raw = fetch(address, tls, "carol@two.test", host_vars["test_passwords"]["carol@two.test"], msg["Subject"])
    assert msg["Message-ID"].encode() in raw


@pytest.mark.parametrize("recipient", ["nobody-here@one.test", "someone@unhosted.test"])
def test_unknown_recipient_is_rejected_at_rcpt(address, recipient):
    """one.test has no catch-all; a domain not hosted here is not relayed for strangers."""
    with smtplib.SMTP(address, 25, timeout=20) as client:
        client.ehlo("client.elsewhere.test")
        assert client.mail("someone@elsewhere.test")[0] == 250
        code = client.rcpt(recipient)[0]
        assert 500 <= code < 600


@pytest.mark.parametrize("port", [25, 465, 587])
def test_relay_without_auth_is_refused(address, tls, port):
    """No open relay: unauthenticated mail for another domain is refused on every port."""
    if port == 465:
        client = smtplib.SMTP_SSL(address, port, context=tls, timeout=20)
    else:
        client = smtplib.SMTP(address, port, timeout=20)
    with client:
        client.ehlo("client.elsewhere.test")
        if port == 587:
            client.starttls(context=tls)
            client.ehlo("client.elsewhere.test")
        code = client.mail("someone@elsewhere.test")[0]
        if code == 250:
            code = client.rcpt("victim@unhosted.test")[0]
        assert 500 <= code < 600


def test_auth_before_starttls_is_refused(host_vars, address):
    with smtplib.SMTP(address, 587, timeout=20) as client:
        client.ehlo("client.elsewhere.test")
        assert not client.has_extn("auth")
        credentials = f"\0alice@one.test\0{host_vars['test_passwords']['alice@one.test']}".encode()
        code = client.docmd("AUTH", f"PLAIN {base64.b64encode(credentials).decode()}")[0]
        assert code != 235 and 500 <= code < 600


@pytest.mark.parametrize("port", [587, 465])
def test_wrong_password_is_refused(address, tls, port):
    with pytest.raises(smtplib.SMTPAuthenticationError):
        submit(address, port, tls, "alice@one.test", "not-her-password", new_message("alice@one.test", "bob@two.test"))


def test_sending_as_another_users_address_is_refused(host_vars, address, tls):
    msg = new_message("bob@two.test", "carol@two.test")
    with pytest.raises(smtplib.SMTPSenderRefused):
        submit(address, 587, tls, "alice@one.test", host_vars["test_passwords"]["alice@one.test"], msg)


def test_sending_as_own_alias_is_allowed(host_vars, address, tls):
    msg = new_message("postmaster@one.test", "bob@two.test")
    submit(address, 587, tls, "alice@one.test", host_vars["test_passwords"]["alice@one.test"], msg)
    assert fetch(address, tls, "bob@two.test", host_vars["test_passwords"]["bob@two.test"], msg["Subject"])


@pytest.mark.parametrize("length", [65_000, 100_000])
def test_a_line_filter_rspamd_would_die_on_is_refused_and_smtpd_keeps_running(host, host_vars, address, tls, length):
    """filter-rspamd exits on a line of 65455 bytes or more, and smtpd with it: the guard it runs under refuses
    such a message (smtpd itself refuses lines beyond about 64 KiB) on every listener Rspamd filters."""
    pid = host.check_output("systemctl show opensmtpd -p MainPID --value")
    ports = [25] + ([587] if host_vars["mail_dkim_signer"] == "rspamd" else [])
    for port in ports:
        sender = "alice@one.test" if port != 25 else "someone@elsewhere.test"
        client = smtplib.SMTP(address, port, timeout=30)
        with client:
            if port != 25:
                client.starttls(context=tls)
                client.login("alice@one.test", host_vars["test_passwords"]["alice@one.test"])
            data = (f"From: {sender}\r\nTo: bob@two.test\r\nSubject: long line\r\n\r\n".encode()
                    + b"x" * length + b"\r\n")
            with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPServerDisconnected)) as refused:
                client.sendmail(sender, ["bob@two.test"], data)
            if isinstance(refused.value, smtplib.SMTPDataError):
                assert 500 <= refused.value.smtp_code < 600, refused.value
    assert host.check_output("systemctl show opensmtpd -p MainPID --value") == pid
    assert host.service("opensmtpd").is_running
