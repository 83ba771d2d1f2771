"""IMAP: TLS is required, the right password is required."""

import imaplib

import pytest


def test_imap_login_without_tls_is_refused(host_vars, address):
    """From the runner's address (not localhost, which Dovecot trusts): no login in clear text."""
    with imaplib.IMAP4(address, 143, timeout=20) as imap:
        assert "LOGINDISABLED" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("alice@one.test", host_vars["test_passwords"]["alice@one.test"])


def test_imap_login_after_starttls_works(host_vars, address, tls):
    with imaplib.IMAP4(address, 143, timeout=20) as imap:
        imap.starttls(ssl_context=tls)
        assert imap.login("alice@one.test", host_vars["test_passwords"]["alice@one.test"])[0] == "OK"


def test_imaps_wrong_password_is_refused(address, tls):
    with imaplib.IMAP4_SSL(address, 993, ssl_context=tls, timeout=20) as imap:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("alice@one.test", "not-her-password")
