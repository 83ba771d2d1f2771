"""Implicit-TLS services (SMTPS, IMAPS) accept TLS 1.2 and refuse older versions."""

import imaplib
import smtplib
import ssl

import pytest
from conftest import pinned_tls

OPEN_AND_CLOSE = {
    465: lambda address, context: smtplib.SMTP_SSL(address, 465, context=context, timeout=20).quit(),
    993: lambda address, context: imaplib.IMAP4_SSL(address, 993, ssl_context=context, timeout=20).logout(),
}


@pytest.mark.parametrize("port", sorted(OPEN_AND_CLOSE))
@pytest.mark.parametrize("version, accepted", [(ssl.TLSVersion.TLSv1_2, True), (ssl.TLSVersion.TLSv1_1, False)])
def test_implicit_tls_requires_tls_1_2_at_least(address, port, version, accepted):
    try:
        OPEN_AND_CLOSE[port](address, pinned_tls(version))
    except (ssl.SSLError, ConnectionError):
        assert not accepted
    else:
        assert accepted
