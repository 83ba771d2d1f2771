"""The demo's last step: submit a message as alice@example.test on 587 and read it back as bob@example.org
over IMAPS, both through the ports the demo container publishes on 127.0.0.1."""

from __future__ import annotations

import argparse
import http.client
import imaplib
import json
import smtplib
import socket
import ssl
import time
import uuid
from email.message import EmailMessage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ca", required=True, help="the demo CA certificate")
    parser.add_argument("--passwords", required=True, help="JSON file: address -> password")
    parser.add_argument("--submission", type=int, required=True, help="published submission port")
    parser.add_argument("--imaps", type=int, required=True, help="published IMAPS port")
    parser.add_argument("--https", type=int, required=True, help="published HTTPS port (the MTA-STS policy)")
    args = parser.parse_args()

    passwords = json.loads(open(args.passwords, encoding="utf-8").read())
    tls = ssl.create_default_context(cafile=args.ca)
    sender, recipient = "alice@example.test", "bob@example.org"
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, recipient
    msg["Subject"] = f"Hello from the opendove demo {uuid.uuid4().hex[:8]}"
    msg.set_content("Submitted on 587 with STARTTLS and AUTH, delivered over LMTP, read over IMAPS.\n")

    with smtplib.SMTP("127.0.0.1", args.submission, timeout=20) as smtp:
        smtp.starttls(context=tls)
        smtp.login(sender, passwords[sender])
        smtp.send_message(msg)
    print(f"demo: submitted '{msg['Subject']}' as {sender} on 127.0.0.1:{args.submission} (STARTTLS, AUTH)")

    deadline = time.monotonic() + 30
    while True:
        with imaplib.IMAP4_SSL("127.0.0.1", args.imaps, ssl_context=tls, timeout=20) as imap:
            imap.login(recipient, passwords[recipient])
            imap.select("INBOX", readonly=True)
            found = imap.search(None, "SUBJECT", f'"{msg["Subject"]}"')[1][0].split()
        if found:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: the message did not reach {recipient}'s INBOX within 30 s")
        time.sleep(0.5)
    print(f"demo: read it back from {recipient}'s INBOX on 127.0.0.1:{args.imaps} (IMAPS)")

    policy_host = "mta-sts.example.test"
    https = http.client.HTTPSConnection(policy_host, args.https, context=tls, timeout=20)
    https.sock = tls.wrap_socket(socket.create_connection(("127.0.0.1", args.https), timeout=20),
                                 server_hostname=policy_host)
    https.request("GET", "/.well-known/mta-sts.txt")
    policy = https.getresponse()
    if policy.status != 200:
        raise SystemExit(f"demo: https://{policy_host}/.well-known/mta-sts.txt answered {policy.status}")
    print(f"demo: MTA-STS policy of example.test (https://{policy_host}, 127.0.0.1:{args.https}):")
    print("      " + policy.read().decode().replace("\r\n", "\n      ").rstrip())
    print(f"""
Point a mail client at it:
  IMAP    127.0.0.1 port {args.imaps}, SSL/TLS       SMTP  127.0.0.1 port {args.submission}, STARTTLS, normal password
  users   {', '.join(f'{a} / {p}' for a, p in passwords.items())}
  trust   {args.ca} (the demo CA; the certificate names mx1.example.test and 127.0.0.1)
Port 25 is published on 127.0.0.1:10025, but the reverse DNS filters drop clients without a PTR record.
Remove everything with: make demo-clean""")


if __name__ == "__main__":
    main()
