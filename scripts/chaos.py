"""kill -9 under load: submits messages from concurrent clients (some sessions carrying several) to a mail host of
a converged Molecule scenario, each to a local user and to the outside world and each with a unique token, and
while they flow kill -9s smtpd, then Dovecot, then the DKIM signer (systemd brings each back). Then it counts
every token over IMAPS and in the outside world's mailbox, where each copy's DKIM signature must verify, and
prints sent / accepted / refused / delivered once / duplicated / lost.

  python scripts/chaos.py --scenario pair --host pair-mx12 [--messages 200] [--runs 10]

(`make chaos SCENARIO=rspamd HOSTS=rspamd-mx13 RUNS=10` runs it; by default one run against pair-mx13.)
It first publishes the scenario's DNS records (playbooks/dns_records.yml, as the Molecule verify step does),
so that the DKIM signatures can be checked; --no-publish skips that. A message the client saw refused, or
whose acceptance it never heard (the connection died after the data), is counted apart: only accepted
messages can be lost. For a message that arrived twice it prints each copy's smtpd queue ids, newest hop
first. Queued mail is nudged with `smtpctl schedule all` while the run waits for it (smtpd would retry mail
for a signer it could not reach only after minutes). The verify step of each Molecule scenario runs it with a
smaller count.
"""

from __future__ import annotations

import argparse
import base64
import email
import imaplib
import json
import os
import random
import re
import smtplib
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

import dkim
import dns.resolver
import yaml

ROOT = Path(__file__).resolve().parents[1]
SINK_MAILDIR = "/srv/sink/Maildir/new"  # the outside world's mailbox (molecule/shared/tasks/smtp_sink.yml)
SENDER, LOCAL, OUTSIDE = "alice@one.test", "bob@two.test", "someone@outside.test"
# The queue id in each Received line smtpd writes: which hop a second copy comes from.
QUEUE_ID = re.compile(rb"\(OpenSMTPD\) with \S+ id ([0-9a-f]+)")


@dataclass
class Target:
    """A mail host of a converged scenario and what the run needs to reach it."""

    container: str  # the mail host's container (systemd inside)
    address: str  # its address on the scenario's network
    outside: str  # the outside world's container (the SMTP sink)
    passwords: dict[str, str]
    dns_server: str  # the scenario's DNS server, for the DKIM keys
    tls: ssl.SSLContext
    signer: str  # the service that signs: rspamd or dkimproxy-out


@dataclass
class Figures:
    sent: int = 0
    accepted: int = 0
    refused: int = 0  # the client saw a refusal or could not connect, after its retries
    unconfirmed: int = 0  # the connection died after the data: the client cannot know
    kills: list[str] = field(default_factory=list)
    local: Counter = field(default_factory=Counter)  # token -> copies in the local user's INBOX
    outside: Counter = field(default_factory=Counter)  # token -> copies at the outside world
    unsigned: list[str] = field(default_factory=list)  # outside copies without a valid DKIM signature
    hops: dict[str, list[str]] = field(default_factory=dict)  # 'local|outside token' -> each copy's queue ids

    def counts(self, accepted: set[str], copies: Counter) -> dict[str, int]:
        return {"delivered once": sum(1 for t in accepted if copies[t] == 1),
                "duplicated": len(duplicated(copies)), "lost": len(lost(accepted, copies))}


def duplicated(copies: Counter) -> list[str]:
    return sorted(token for token, count in copies.items() if count > 1)


def lost(accepted: set[str], copies: Counter) -> list[str]:
    return sorted(token for token in accepted if not copies[token])


def docker(container: str, *command: str, check: bool = True) -> str:
    return subprocess.run(["docker", "exec", container, *command], capture_output=True, text=True,
                          check=check, timeout=120).stdout.strip()


def ephemeral_dir(scenario: str) -> Path:
    """Molecule's working directory of a converged scenario (its inventory, its test certificates)."""
    return next(Path.home().glob(f".ansible/tmp/molecule.*.{scenario}"))


def publish_records(scenario: str) -> None:
    """The DNS records of every mail host, published on the scenario's DNS server (DKIM keys to verify with)."""
    inventory, out = ephemeral_dir(scenario) / "inventory", ephemeral_dir(scenario) / "chaos-dns-records"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    for playbook, variable in (("playbooks/dns_records.yml", "dns_records_dir"),
                               ("molecule/shared/publish_dns.yml", "test_dns_records_dir")):
        subprocess.run(["ansible-playbook", "-i", str(inventory), str(ROOT / playbook), "-e", f"{variable}={out}"],
                       check=True, env=env, stdout=subprocess.DEVNULL, timeout=900)


def scenario_target(scenario: str, container: str) -> Target:
    """What the scenario's inventory says (passwords, DNS server, signer) and the containers' addresses."""
    inventory = ROOT / "molecule" / scenario / "inventory" / "group_vars"
    site = {**yaml.safe_load((inventory / "mail.yml").read_text()), **yaml.safe_load((inventory / "all.yml").read_text())}
    address = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                              container], capture_output=True, text=True, check=True).stdout.strip()
    pki = ephemeral_dir(scenario) / "pki"
    tls = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    tls.check_hostname = False
    tls.load_cert_chain(pki / "client.pem", pki / "client.key")
    signer = docker(container, "sh", "-c", "systemctl is-enabled dkimproxy-out >/dev/null 2>&1 && echo dkimproxy-out "
                                           "|| echo rspamd")
    return Target(container, address, f"{scenario}-outside", site["test_passwords"], site["test_dns_server"], tls,
                  signer)


def message(token: str) -> bytes:
    return (f"From: {SENDER}\r\nTo: {LOCAL}, {OUTSIDE}\r\nSubject: chaos {token}\r\nDate: {formatdate()}\r\n"
            f"Message-ID: <{token}@chaos.opendove.test>\r\n\r\nchaos token {token}\r\n").encode()


class Client:
    """One submission client: sessions of several messages on 587, retrying what was never handed over."""

    RETRIES = 20  # connection attempts per message while a daemon is down (1 s apart)

    def __init__(self, target: Target, figures: Figures, lock: threading.Lock, accepted: set[str]):
        self.target, self.figures, self.lock, self.accepted = target, figures, lock, accepted

    def session(self, tokens: list[str]) -> None:
        pending = list(tokens)
        for attempt in range(self.RETRIES):
            if not pending:
                return
            try:
                with smtplib.SMTP(self.target.address, 587, timeout=60) as client:
                    client.starttls(context=self.target.tls)
                    client.login(SENDER, self.target.passwords[SENDER])
                    while pending:
                        self.send(client, pending[0])
                        pending.pop(0)
            except _Handed:
                pending.pop(0)  # counted (accepted, refused or unconfirmed); the rest in a new session
            except (smtplib.SMTPException, OSError):
                time.sleep(1)  # never handed over: try again
        with self.lock:
            self.figures.refused += len(pending)

    def send(self, client: smtplib.SMTP, token: str) -> None:
        """Send one message: returns once it is accepted; raises _Handed once the outcome is known otherwise;
        other exceptions when it was never handed over (safe to send again)."""
        code = client.mail(SENDER)[0]
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, b"", SENDER)
        for recipient in (LOCAL, OUTSIDE):
            code = client.rcpt(recipient)[0]
            if code != 250:
                raise smtplib.SMTPRecipientsRefused({recipient: (code, b"")})
        code = client.docmd("DATA")[0]
        if code != 354:
            raise smtplib.SMTPDataError(code, b"")
        try:
            client.send(message(token).replace(b"\r\n.", b"\r\n..") + b".\r\n")
        except OSError:
            self.count("unconfirmed")  # may have reached the server whole
            raise _Handed from None
        try:
            code = client.getreply()[0]
        except (smtplib.SMTPServerDisconnected, OSError):
            self.count("unconfirmed")
            raise _Handed from None
        if code == 250:
            with self.lock:
                self.figures.accepted += 1
                self.accepted.add(token)
            return
        self.count("refused")  # a refusal of the data itself (a 421 while the filter's Rspamd is down)
        raise _Handed

    def count(self, what: str) -> None:
        with self.lock:
            setattr(self.figures, what, getattr(self.figures, what) + 1)


class _Handed(Exception):
    """The message's outcome is known (refused, or unconfirmed): it is not sent again."""


def kill(target: Target, service: str) -> str:
    """kill -9 the service's main process; wait until systemd has it running again."""
    pid = docker(target.container, "systemctl", "show", service, "-p", "MainPID", "--value")
    docker(target.container, "kill", "-9", pid)
    start = time.monotonic()
    while time.monotonic() - start < 60:
        time.sleep(0.5)
        new = docker(target.container, "systemctl", "show", service, "-p", "MainPID", "--value")
        if new not in ("0", pid) and docker(target.container, "systemctl", "is-active", service, check=False) == "active":
            return f"{service} (pid {pid}) back after {time.monotonic() - start:.1f} s"
    raise RuntimeError(f"{service} is not back 60 s after kill -9")


def local_copies(target: Target, run: str, hops: dict[str, list[str]]) -> Counter:
    """token -> copies in the local recipient's INBOX; hops gets each copy's queue ids (local: ...)."""
    copies: Counter = Counter()
    with imaplib.IMAP4_SSL(target.address, 993, ssl_context=target.tls, timeout=60) as imap:
        imap.login(LOCAL, target.passwords[LOCAL])
        imap.select("INBOX", readonly=True)
        status, found = imap.search(None, "SUBJECT", f'"chaos {run}-"')
        numbers = found[0].split()
        if numbers:
            status, data = imap.fetch(b",".join(numbers), "(BODY.PEEK[HEADER.FIELDS (SUBJECT RECEIVED)])")
            for part in data:
                if isinstance(part, tuple):
                    token = email.message_from_bytes(part[1])["Subject"].split("chaos ", 1)[1].strip()
                    copies[token] += 1
                    hops.setdefault(f"local {token}", []).append(" ".join(
                        i.decode() for i in QUEUE_ID.findall(re.sub(rb"\r?\n[ \t]+", b" ", part[1]))))
    return copies


# Runs in the outside world's container: the files of its mailbox that hold the run's tokens, base64 in JSON.
_READ_SINK = """
import base64, json, os, sys
found = {}
for name in os.listdir(sys.argv[1]):
    data = open(os.path.join(sys.argv[1], name), "rb").read()
    if sys.argv[2].encode() in data:
        found[name] = base64.b64encode(data).decode()
print(json.dumps(found))
"""


def outside_copies(target: Target, run: str, dnsfunc,
                   seen: dict[str, tuple[str, bool, str]]) -> tuple[Counter, list[str]]:
    """token -> copies at the outside world, and the tokens of copies whose DKIM signature does not verify.
    seen: file name -> (token, signature valid, queue ids), kept between calls so that each copy is verified
    once."""
    found = json.loads(docker(target.outside, "python3", "-c", _READ_SINK, SINK_MAILDIR, f"chaos {run}-"))
    for name, data in found.items():
        if name not in seen:
            raw = base64.b64decode(data).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            parsed = email.message_from_bytes(raw)
            token = parsed["Subject"].split("chaos ", 1)[1].strip()
            ids = " ".join(i.decode() for i in QUEUE_ID.findall(re.sub(rb"\r\n[ \t]+", b" ", raw)))
            seen[name] = (token, bool(parsed.get_all("DKIM-Signature")) and dkim.verify(raw, dnsfunc=dnsfunc), ids)
    copies = Counter(token for token, valid, ids in seen.values())
    return copies, [token for token, valid, ids in seen.values() if not valid]


def dns_lookup(server: str):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server]

    def lookup(name, timeout=5):
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)
    return lookup


def run(target: Target, messages: int = 200, clients: int = 10, max_per_session: int = 5,
        settle: float = 300, seed: int | None = None) -> tuple[Figures, dict[str, dict[str, int]]]:
    """One chaos run; the figures and, for the local and the outside copies, delivered once / duplicated / lost."""
    rng = random.Random(seed)
    run_id = uuid.uuid4().hex[:12]
    figures, lock, accepted = Figures(), threading.Lock(), set()
    sessions, made = [], 0
    while made < messages:
        size = min(rng.randint(1, max_per_session), messages - made)
        sessions.append([f"{run_id}-{made + i}" for i in range(size)])
        made += size
    figures.sent = made
    queue = list(sessions)

    def worker() -> None:
        client = Client(target, figures, lock, accepted)
        while True:
            with lock:
                if not queue:
                    return
                tokens = queue.pop(0)
            client.session(tokens)

    threads = [threading.Thread(target=worker, daemon=True) for number in range(clients)]
    for thread in threads:
        thread.start()
    # The kills, while the messages flow: after about a fifth, two fifths and three fifths are handed over.
    for service, share in (("opensmtpd", 0.2), ("dovecot", 0.4), (target.signer, 0.6)):
        while figures.accepted + figures.refused + figures.unconfirmed < share * made and any(t.is_alive() for t in threads):
            time.sleep(0.05)
        figures.kills.append(kill(target, service))
    for thread in threads:
        thread.join()

    # Wait until every accepted message has left the queue and the counts are still for a while.
    dnsfunc, seen = dns_lookup(target.dns_server), {}
    deadline, stable_since, last = time.monotonic() + settle, None, None
    nudged = 0.0
    while time.monotonic() < deadline:
        queued = docker(target.container, "smtpctl", "show", "queue", check=False)
        if queued and time.monotonic() - nudged > 20:
            # smtpd retries mail for a signer it could not reach only after its back-off (about 7 minutes):
            # the operator's `smtpctl schedule all` brings that forward (it counts, not how soon).
            docker(target.container, "smtpctl", "schedule", "all", check=False)
            nudged = time.monotonic()
        figures.hops = {}
        figures.local = local_copies(target, run_id, figures.hops)
        figures.outside, figures.unsigned = outside_copies(target, run_id, dnsfunc, seen)
        for token, valid, ids in seen.values():
            figures.hops.setdefault(f"outside {token}", []).append(ids)
        now = (sum(figures.local.values()), sum(figures.outside.values()), bool(queued))
        complete = not queued and all(figures.local[t] and figures.outside[t] for t in accepted)
        if now != last:
            stable_since, last = time.monotonic(), now
        elif complete and time.monotonic() - stable_since > 10:
            break
        time.sleep(2)
    return figures, {"local": figures.counts(accepted, figures.local),
                     "outside": figures.counts(accepted, figures.outside)}


def report(target: Target, figures: Figures, counts: dict[str, dict[str, int]]) -> str:
    return (f"{target.container}: sent {figures.sent}, accepted {figures.accepted}, refused {figures.refused}, "
            f"unconfirmed {figures.unconfirmed}; local: " + ", ".join(f"{k} {v}" for k, v in counts["local"].items())
            + "; outside: " + ", ".join(f"{k} {v}" for k, v in counts["outside"].items())
            + f"; outside without a valid DKIM signature {len(figures.unsigned)}; kills: {'; '.join(figures.kills)}"
            + "".join(f"; {what}: {' '.join(tokens[:5])}" for what, tokens in (
                ("duplicated locally", duplicated(figures.local)), ("duplicated outside", duplicated(figures.outside)),
                ("unsigned", sorted(figures.unsigned))) if tokens)
            # Each copy's queue ids, newest hop first: the hop where the ids part is the one that sent twice.
            + "".join(f"; {where} {token} queue ids: {' / '.join(figures.hops.get(f'{where} {token}', []))}"
                      for where, copies in (("local", figures.local), ("outside", figures.outside))
                      for token in duplicated(copies)[:5]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", required=True, help="a converged Molecule scenario (rspamd, pair)")
    parser.add_argument("--host", required=True, action="append", help="a mail host's container (repeatable)")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--per-session", type=int, default=5, help="most messages in one session")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-publish", action="store_true", help="the DNS records are published already")
    args = parser.parse_args()
    if not args.no_publish:
        publish_records(args.scenario)
    bad = 0
    for host in args.host:
        target = scenario_target(args.scenario, host)
        for number in range(1, args.runs + 1):
            figures, counts = run(target, args.messages, args.clients, args.per_session)
            print(f"run {number}: {report(target, figures, counts)}", flush=True)
            bad += sum(c["duplicated"] + c["lost"] for c in counts.values()) + len(figures.unsigned)
    print(json.dumps({"failed_runs_or_messages": bad}))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
