"""Client certificates on submission (opensmtpd_submission_auth: [password, client_certificate]): a second
factor for the device, always together with the password. Without a certificate, with one from another CA, or
with a certificate and a wrong password, submission is refused."""

from __future__ import annotations

import smtplib
import ssl

import pytest
from conftest import client_tls, fetch, new_message, submit

# The server ends the TLS session with an alert (certificate required, unknown CA): with TLS 1.3 the client
# sees it at its next read, as a closed connection.
REFUSED = (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)


@pytest.fixture(scope="module")
def requires_certificates(host_vars):
    if "client_certificate" not in host_vars.get("opensmtpd_submission_auth", []):
        pytest.skip("the scenario does not ask for client certificates")


@pytest.fixture(scope="module")
def alice(host_vars):
    return "alice@one.test", host_vars["test_passwords"]["alice@one.test"]


@pytest.mark.parametrize("port", [465, 587])
def test_certificate_and_password_submit(address, tls, host_vars, requires_certificates, alice, port):
    msg = new_message(alice[0], "bob@two.test")
    submit(address, port, tls, *alice, msg)
    assert fetch(address, tls, "bob@two.test", host_vars["test_passwords"]["bob@two.test"], msg["Subject"])


@pytest.mark.parametrize("port", [465, 587])
@pytest.mark.parametrize("certificate", [None, "other-client"], ids=["no-certificate", "other-ca"])
def test_missing_or_foreign_certificate_is_refused(address, requires_certificates, alice, port, certificate):
    with pytest.raises(REFUSED):
        submit(address, port, client_tls(certificate), *alice, new_message(alice[0], "bob@two.test"))


@pytest.mark.parametrize("port", [465, 587])
def test_certificate_with_a_wrong_password_is_refused(address, tls, requires_certificates, alice, port):
    with pytest.raises(smtplib.SMTPAuthenticationError):
        submit(address, port, tls, alice[0], "wrong-" + alice[1], new_message(alice[0], "bob@two.test"))
