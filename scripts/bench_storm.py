"""AUTH storm benchmark against the demo container (run `make demo` first): the latency of an ordinary inbound
message on port 25, idle and while 20 clients send wrong passwords on 587, and the submission rate at 1 and at
25 messages per session. Prints figures; asserts nothing (a benchmark, not a test).

The storm comes from this machine's address on the demo's Docker network. For the run, that address gets a
reverse DNS name in the container's /etc/hosts (the demo's rdns filters drop clients without one) and is put
on fail2ban's ignore list, so that the figures show what the server does when banning does not help (many
sources); both are undone at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import smtplib
import ssl
import statistics
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

HOSTS_NAME = "bench-client.example.net"


def docker(container: str, *command: str, check: bool = True) -> str:
    return subprocess.run(["docker", "exec", container, *command], capture_output=True, text=True,
                          check=check).stdout


def client_address(container: str) -> str:
    """The address the container sees this machine's connections from (its network's gateway)."""
    networks = json.loads(subprocess.run(["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                          container], capture_output=True, text=True, check=True).stdout)
    return next(iter(networks.values()))["Gateway"]


class Lab:
    """What the run changes in the container, undone on exit."""

    def __init__(self, container: str):
        self.container = container
        self.address = client_address(container)
        self.jails: list[str] = []

    def __enter__(self) -> Lab:
        docker(self.container, "sh", "-c", f"echo '{self.address} {HOSTS_NAME}' >>/etc/hosts")
        status = docker(self.container, "fail2ban-client", "status", check=False)
        if "Jail list:" in status:
            self.jails = [j.strip() for j in status.split("Jail list:")[1].split(",") if j.strip()]
        for jail in self.jails:
            docker(self.container, "fail2ban-client", "set", jail, "addignoreip", self.address)
        return self

    def __exit__(self, *exc) -> None:
        for jail in self.jails:
            docker(self.container, "fail2ban-client", "set", jail, "delignoreip", self.address, check=False)
        # /etc/hosts is a bind mount: rewrite it in place, without the benchmark's line.
        docker(self.container, "sh", "-c", f"grep -v ' {HOSTS_NAME}$' /etc/hosts >/tmp/hosts && "
               "cat /tmp/hosts >/etc/hosts && rm /tmp/hosts", check=False)


def message(sender: str, recipient: str) -> bytes:
    return (f"From: {sender}\r\nTo: {recipient}\r\nSubject: bench {uuid.uuid4()}\r\n"
            f"Message-ID: <{uuid.uuid4()}@bench.example.net>\r\n\r\nbenchmark\r\n").encode()


def inbound_latency(args, recipient: str) -> float:
    """Seconds from connecting on 25 to the 250 after DATA, as another MTA would deliver."""
    start = time.monotonic()
    with smtplib.SMTP(args.host, args.smtp, local_hostname=HOSTS_NAME, timeout=120) as client:
        client.sendmail("someone@example.net", [recipient], message("someone@example.net", recipient))
    return time.monotonic() - start


def storm(args, tls: ssl.SSLContext, login: str, stop: threading.Event, counts: list[int]) -> None:
    """One client: STARTTLS and wrong passwords for a real login, again and again, until stopped."""
    wrong = base64.b64encode(f"\0{login}\0not-the-password-{uuid.uuid4()}".encode()).decode()
    while not stop.is_set():
        try:
            with smtplib.SMTP(args.host, args.submission, timeout=60) as client:
                client.starttls(context=tls)
                client.ehlo("storm.example.net")
                while not stop.is_set():
                    code = client.docmd("AUTH", f"PLAIN {wrong}")[0]
                    counts.append(code)
                    if code == 421 or code < 400:
                        break
        except (smtplib.SMTPException, OSError):
            time.sleep(0.05)


def submission_rate(args, tls: ssl.SSLContext, login: str, password: str, recipient: str, total: int,
                    per_session: int, clients: int) -> tuple[float, int]:
    """Accepted messages per second with `clients` concurrent clients; and how many were refused."""
    sessions = [per_session] * (total // per_session)
    refused = []

    def session(count: int) -> None:
        try:
            with smtplib.SMTP(args.host, args.submission, timeout=120) as client:
                client.starttls(context=tls)
                client.login(login, password)
                for number in range(count):
                    client.sendmail(login, [recipient], message(login, recipient))
        except (smtplib.SMTPException, OSError):
            refused.append(count)

    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(session, sessions))
    return (sum(sessions) - sum(refused)) / (time.monotonic() - start), sum(refused)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--container", default="mx1.example.test")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp", type=int, default=10025, help="published port 25")
    parser.add_argument("--submission", type=int, default=10587, help="published port 587")
    parser.add_argument("--ca", default="demo/.state/pki/ca.pem")
    parser.add_argument("--passwords", default="demo/.state/passwords.json")
    parser.add_argument("--clients", type=int, default=20, help="storm clients and submission clients")
    parser.add_argument("--probes", type=int, default=10, help="inbound messages timed, idle and in the storm")
    parser.add_argument("--messages", type=int, default=500, help="messages per submission rate measurement")
    args = parser.parse_args()

    passwords = json.loads(open(args.passwords, encoding="utf-8").read())
    (login, password), (recipient, recipient_password) = list(passwords.items())[:2]
    tls = ssl.create_default_context(cafile=args.ca)
    tls.check_hostname = False
    hashes = docker(args.container, "sh", "-c", "cut -d' ' -f2 /etc/smtpd/credentials | cut -c1-20")
    with Lab(args.container) as lab:
        print(f"bench_storm: {args.container}, clients from {lab.address}; fail2ban jails ignoring it for the "
              f"run: {', '.join(lab.jails) or 'none'}; hash settings: {' '.join(sorted(set(hashes.split())))}")
        idle = [inbound_latency(args, recipient) for probe in range(args.probes)]
        stop, counts = threading.Event(), []
        threads = [threading.Thread(target=storm, args=(args, tls, login, stop, counts), daemon=True)
                   for number in range(args.clients)]
        for thread in threads:
            thread.start()
        time.sleep(3)  # the storm at full strength before the first probe
        storm_start, counted = time.monotonic(), len(counts)
        stormy = [inbound_latency(args, recipient) for probe in range(args.probes)]
        attempts = (len(counts) - counted) / (time.monotonic() - storm_start)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        rates = {n: submission_rate(args, tls, login, password, recipient, args.messages, n, args.clients)
                 for n in (1, 25)}

    print(f"{'measure':<52} {'median':>9} {'max':>9}")
    print(f"{'inbound on 25, idle (s)':<52} {statistics.median(idle):9.3f} {max(idle):9.3f}")
    print(f"{f'inbound on 25, {args.clients}-client AUTH storm on 587 (s)':<52} "
          f"{statistics.median(stormy):9.3f} {max(stormy):9.3f}")
    print(f"storm: {attempts:.1f} failed AUTH attempts/s; inbound latency ratio storm/idle "
          f"{statistics.median(stormy) / statistics.median(idle):.1f}x (goal: within 3x)")
    for per_session, (rate, refused) in rates.items():
        print(f"submission, {args.clients} clients, {per_session} message(s) per session: {rate:.1f} msg/s accepted"
              f" ({args.messages} messages, {refused} refused)")


if __name__ == "__main__":
    main()
