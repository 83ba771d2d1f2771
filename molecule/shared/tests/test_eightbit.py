"""8-bit and UTF-8 mail on every path: submission on 465 and 587 to a local user and to the outside world, and
inbound on 25, with and without BODY=8BITMIME declared. Each message is read back (IMAPS, or the outside
world's mailbox) and must end with exactly the bytes that were sent; what leaves carries a DKIM signature that
verifies. OpenSMTPD does not offer SMTPUTF8: a client that declares it anyway is refused at MAIL FROM, cleanly,
and the session goes on."""

from __future__ import annotations

import smtplib
import uuid
from email.utils import formatdate

import pytest
from conftest import eventually, inbox_message, outside_bytes, verified

# Raw UTF-8 in header fields (RFC 6532 style) and bodies in UTF-8 and in Latin-1 (a byte that is not UTF-8).
BODIES = {
    "utf8": "Grüße aus Köln, 東京, Ελλάδα: naïve café\r\n..a line that starts with a dot\r\n".encode(),
    "latin1": b"caf\xe9, na\xefve, \xa9 1999\r\n\xff\xfe bytes that are no UTF-8 at all\r\n",
}
PATHS = [  # (port, recipient kind)
    (465, "local"), (587, "local"), (465, "outside"), (587, "outside"), (25, "local"),
]


def eightbit_message(sender: str, recipient: str, body: str) -> tuple[bytes, str]:
    """The message's bytes (CRLF lines) and its Message-ID."""
    message_id = f"<{uuid.uuid4()}@opendove.test>"
    # Complete, as a mail client writes it (smtpd adds a missing Date to submissions).
    header = (f"From: Zoë Ünal <{sender}>\r\nTo: {recipient}\r\nSubject: 8-bit {body} ✉ {uuid.uuid4()}\r\n"
              f"Date: {formatdate()}\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
              f"Content-Type: text/plain; charset={'utf-8' if body == 'utf8' else 'iso-8859-1'}\r\n"
              "Content-Transfer-Encoding: 8bit\r\n\r\n").encode()
    return header + BODIES[body], message_id


def connect(address: str, port: int, tls):
    if port == 465:
        return smtplib.SMTP_SSL(address, port, context=tls, timeout=30)
    client = smtplib.SMTP(address, port, timeout=30)
    if port == 587:
        client.starttls(context=tls)
    return client


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture(scope="module")
def sent(host_vars, address, tls):
    """Every path, body and declaration, sent once per host: {(port, kind, body, declared): (bytes, Message-ID,
    recipient login or None for the outside world)}."""
    passwords = host_vars["test_passwords"]
    messages = {}
    for port, kind in PATHS:
        for body in BODIES:
            for declared in (False, True):
                sender = "alice@one.test" if port != 25 else "someone@elsewhere.test"
                recipient = "bob@two.test" if kind == "local" else "someone@outside.test"
                data, message_id = eightbit_message(sender, recipient, body)
                with connect(address, port, tls) as client:
                    if port != 25:
                        client.login("alice@one.test", passwords["alice@one.test"])
                    client.sendmail(sender, [recipient], data, mail_options=["BODY=8BITMIME"] if declared else [])
                messages[(port, kind, body, declared)] = (data, message_id, recipient if kind == "local" else None)
    return messages


@pytest.mark.parametrize("declared", [False, True], ids=["undeclared", "8bitmime"])
@pytest.mark.parametrize("body", sorted(BODIES))
@pytest.mark.parametrize("port, kind", PATHS, ids=[f"{p}-{k}" for p, k in PATHS])
def test_eightbit_mail_arrives_byte_for_byte(host_vars, address, tls, sent, dnsfunc, port, kind, body, declared):
    data, message_id, login = sent[(port, kind, body, declared)]
    if login:
        subject = next(line for line in data.split(b"\r\n") if line.startswith(b"Subject: "))
        # IMAP SEARCH would need the 8-bit subject in a charset: find the message by its Message-ID instead.
        raw = eventually(lambda: inbox_message(address, tls, login, host_vars["test_passwords"][login],
                                               message_id, field="Message-ID"),
                         f"no message {message_id} in {login}'s INBOX")
        assert subject in raw
    else:
        raw = outside_bytes(message_id)
        signatures = verified(crlf(raw), dnsfunc)
        assert signatures and all(domain == "one.test" for domain, selector, algorithm in signatures), signatures
    assert crlf(raw).endswith(data), repr(raw) + " does not end with " + repr(data)


@pytest.mark.parametrize("port", [25, 465, 587])
def test_smtputf8_is_not_offered_and_a_declaration_is_refused_cleanly(host_vars, address, tls, port):
    with connect(address, port, tls) as client:
        client.ehlo("client.elsewhere.test")
        assert not client.has_extn("smtputf8")
        if port != 25:
            client.login("alice@one.test", host_vars["test_passwords"]["alice@one.test"])
        sender = "alice@one.test" if port != 25 else "someone@elsewhere.test"
        # smtplib itself would not send what the server does not offer.
        code = client.docmd("MAIL", f"FROM:<{sender}> SMTPUTF8")[0]
        assert 500 <= code < 600
        client.rset()
        # The session goes on: the same message without the declaration is taken.
        data = eightbit_message(sender, "bob@two.test", "utf8")[0]
        assert client.sendmail(sender, ["bob@two.test"], data) == {}
