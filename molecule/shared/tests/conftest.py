"""Fixtures and helpers for the verify step: real SMTP and IMAP sessions from the test runner to each
mail host's own address, TLS verified against the scenario's test CA."""

from __future__ import annotations

import base64
import email
import imaplib
import json
import os
import re
import smtplib
import ssl
import subprocess
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import dkim
import dns.resolver
import pytest
import testinfra

DELIVERY_TIMEOUT = 60  # seconds to wait for a message: generous for a loaded CI machine; a passing test waits less
INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
PKI = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki"  # the test CAs and certificates (prepare.yml)
SINK_MAILDIR = "/srv/sink/Maildir"  # the outside world's mailbox (molecule/shared/tasks/smtp_sink.yml)


def pytest_configure(config):
    config.addinivalue_line("markers", "rotation: rotate_keys.yml end to end (scenario pair only)")
    config.addinivalue_line("markers", "pair: the same in every scenario, run once: in the pair scenario (both "
                                       "Debian releases, both signers)")


def pytest_collection_modifyitems(items):
    """The rotation tests first: they start from the hosts as converged, as a timer's first runs would (the
    other tests add a domain and change settings)."""
    items.sort(key=lambda item: item.get_closest_marker("rotation") is None)


@pytest.fixture(scope="module")
def host_vars(host):
    """The host's inventory variables (the scenario's site model and test-only values)."""
    return host.ansible.get_variables()


def host_address(host) -> str:
    """The host's IPv4 address on the scenario's Docker network."""
    return next(a for a in host.interface("eth0").addresses if ":" not in a)


@pytest.fixture(scope="module")
def address(host):
    return host_address(host)


def client_tls(certificate: str | None = "client") -> ssl.SSLContext:
    """A client TLS context that trusts only the scenario's test CA (hostname checked against the IP SAN) and
    offers this client certificate (molecule/shared/prepare.yml) to servers that ask for one; None: none."""
    context = ssl.create_default_context(cafile=str(PKI / "ca.pem"))
    if certificate:
        context.load_cert_chain(PKI / f"{certificate}.pem", PKI / f"{certificate}.key")
    return context


@pytest.fixture(scope="session")
def tls():
    """The client context of every session: the test CA, and the trusted client certificate (only sent to
    servers that ask for one, such as submission with opensmtpd_submission_client_ca)."""
    return client_tls()


def pinned_tls(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client context that speaks exactly this TLS version, its own security level lowered so that a
    refusal of an old version comes from the server, not from the client's defaults."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = version
    context.maximum_version = version
    context.load_cert_chain(PKI / "client.pem", PKI / "client.key")
    return context


def new_message(sender: str, recipient: str) -> EmailMessage:
    """A message with a unique subject, to find it again over IMAP."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = f"opendove test {uuid.uuid4()}"
    msg["Message-ID"] = f"<{uuid.uuid4()}@opendove.test>"
    msg.set_content("A test message from the opendove.mailserver verify step.\n")
    return msg


def submit(address: str, port: int, tls: ssl.SSLContext, login: str, password: str, msg: EmailMessage,
           recipients: list[str] | None = None) -> None:
    """Authenticated submission: implicit TLS on 465, STARTTLS otherwise."""
    if port == 465:
        client = smtplib.SMTP_SSL(address, port, context=tls, timeout=20)
    else:
        client = smtplib.SMTP(address, port, timeout=20)
        client.starttls(context=tls)
    with client:
        client.login(login, password)
        client.send_message(msg, to_addrs=recipients)


def deliver_inbound(address: str, msg: EmailMessage, recipients: list[str], helo: str = "mx.outside.test") -> None:
    """Unauthenticated delivery on port 25, as another MTA would (it greets with its own name)."""
    with smtplib.SMTP(address, 25, timeout=20, local_hostname=helo) as client:
        client.send_message(msg, to_addrs=recipients)


def eventually(probe, what: str, timeout: float = DELIVERY_TIMEOUT):
    """probe()'s first true result, asking every half second until the deadline (then the test fails)."""
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        assert time.monotonic() < deadline, f"{what} after {timeout} s"
        time.sleep(0.5)
    return result


def inbox_message(address: str, tls: ssl.SSLContext, login: str, password: str, value: str,
                  field: str = "Subject") -> bytes | None:
    """The raw message whose header field (Subject) holds this value, from the account's INBOX over IMAPS, or None."""
    with imaplib.IMAP4_SSL(address, 993, ssl_context=tls, timeout=20) as imap:
        imap.login(login, password)
        imap.select("INBOX", readonly=True)
        status, found = imap.search(None, "HEADER", field, f'"{value}"')
        numbers = found[0].split()
        if not numbers:
            return None
        status, data = imap.fetch(numbers[-1], "(RFC822)")
        return data[0][1]


def fetch(address: str, tls: ssl.SSLContext, login: str, password: str, subject: str) -> bytes:
    """The raw message with this subject from the account's INBOX over IMAPS, waiting for delivery."""
    return eventually(lambda: inbox_message(address, tls, login, password, subject),
                      f"no message {subject!r} in {login}'s INBOX")


def sink_files(message_id: str) -> list[str]:
    """The files of the outside world's mailbox that hold this Message-ID (none yet: an empty list)."""
    return outside_host().run(f"grep -rlF -- '{message_id}' {SINK_MAILDIR}/new").stdout.split()


def outside_message(message_id: str, timeout: float = DELIVERY_TIMEOUT) -> str:
    """The message with this Message-ID as the outside world's SMTP sink stored it, waiting for delivery."""
    return outside_bytes(message_id, timeout).decode()


def outside_bytes(message_id: str, timeout: float = DELIVERY_TIMEOUT) -> bytes:
    """outside_message's bytes, as stored."""
    found = eventually(lambda: sink_files(message_id), f"no message {message_id} reached the outside world", timeout)
    return outside_host().file(found[0]).content


def outside_host():
    """The outside world's container (group `outside`), as a testinfra host."""
    return testinfra.get_hosts(["outside"], connection="ansible", ansible_inventory=str(INVENTORY))[0]


# Runs in the outside world's container: an authenticated submission from another host (not from the mail
# host's own addresses, and not from the runner), reporting the server's answer as JSON.
_OUTSIDE_SUBMIT = """
import base64, json, smtplib, ssl, sys
job = json.loads(base64.b64decode(sys.argv[1]))
context = ssl.create_default_context()
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
# The submission client certificate (molecule/shared/prepare.yml), for servers that ask for one.
context.load_cert_chain("/srv/client/client.pem", "/srv/client/client.key")
try:
    with smtplib.SMTP(job["address"], 587, timeout=30) as client:
        client.starttls(context=context)
        client.login(job["login"], job["password"])
        client.sendmail(job["sender"], job["recipients"], job["message"].encode())
    print(json.dumps({"code": 250, "error": ""}))
except smtplib.SMTPResponseException as exc:
    print(json.dumps({"code": exc.smtp_code, "error": exc.smtp_error.decode(errors="replace")}))
except smtplib.SMTPServerDisconnected as exc:
    print(json.dumps({"code": 0, "error": str(exc)}))
"""


def submit_from_outside(address: str, login: str, password: str, msg: EmailMessage,
                        recipients: list[str] | None = None, sender: str | None = None) -> dict:
    """Submit msg on port 587 of `address` from the outside world's container: {code, error} of the answer."""
    job = {"address": address, "login": login, "password": password, "message": msg.as_string(),
           "sender": sender or login, "recipients": recipients or [msg["To"]]}
    encoded = base64.b64encode(json.dumps(job).encode()).decode()
    script = base64.b64encode(_OUTSIDE_SUBMIT.encode()).decode()
    output = outside_host().check_output(f'python3 -c "$(echo {script} | base64 -d)" {encoded}')
    return json.loads(output)


def key_ring(host, domain: str) -> dict:
    """The host's DKIM key ring of this domain (the dkim_keys module's state file)."""
    return json.loads(host.file(f"/var/lib/opendove/dkim/{domain}.json").content_string)


def mail_hosts() -> list:
    """Every host of the scenario's `mail` group, as testinfra hosts."""
    return testinfra.get_hosts(["mail"], connection="ansible", ansible_inventory=str(INVENTORY))


@pytest.fixture(scope="session")
def published_records(tmp_path_factory):
    """playbooks/dns_records.yml's output directory, once published on the scenario's DNS server."""
    out = tmp_path_factory.mktemp("dns-records")
    run_playbook("playbooks/dns_records.yml", "-e", f"dns_records_dir={out}")
    run_playbook("molecule/shared/publish_dns.yml", "-e", f"test_dns_records_dir={out}")
    return out


@pytest.fixture(scope="session")
def scenario_dns():
    """A resolver that asks only the scenario's DNS server."""
    dns_server = mail_hosts()[0].ansible.get_variables()["test_dns_server"]
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns_server]
    return resolver


@pytest.fixture(scope="session")
def dnsfunc(published_records, scenario_dns):
    """dkimpy's DNS lookup, answered by the scenario's DNS server only."""
    def lookup(name, timeout=5):
        try:
            answer = scenario_dns.resolve(name.decode().rstrip(".") if isinstance(name, bytes) else name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)
    return lookup


def signatures(raw: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature header."""
    found = []
    for value in email.message_from_bytes(raw).get_all("DKIM-Signature") or []:
        tags = (tag.strip().split("=", 1) for tag in "".join(value.split()).split(";") if "=" in tag)
        found.append(dict(tags))
    return found


def verified(raw: bytes, dnsfunc) -> list[tuple[str, str, str]]:
    """(d, s, a) of every signature, each verified by dkimpy; an unverifiable signature fails the test."""
    checker = dkim.DKIM(raw)
    result = []
    for index, tags in enumerate(signatures(raw)):
        assert checker.verify(idx=index, dnsfunc=dnsfunc), (tags, raw[:3000])
        result.append((tags["d"], tags["s"], tags["a"]))
    return result


def run_playbook(playbook: str, *args: str, succeed: bool = True) -> str:
    """Run a playbook of the project (path relative to it) against the scenario's inventory, as a user
    would; assert it succeeds (or fails); return its whole output."""
    result = subprocess.run(["ansible-playbook", "-i", str(INVENTORY), str(PROJECT / playbook), *args],
                            capture_output=True, text=True, timeout=900, check=False,
                            env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1"))
    assert (result.returncode == 0) == succeed, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout + result.stderr


RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap_of(output: str) -> dict[str, tuple[int, int, int]]:
    """(changed, unreachable, failed) per host, from a playbook run's output."""
    recap = {m[0]: tuple(int(n) for n in m[1:]) for m in RECAP.findall(output)}
    assert recap, output[-2000:]
    return recap
