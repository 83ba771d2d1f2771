"""A real BIND for the unit tests: named (Debian package bind9) in the foreground on a free port of 127.0.0.1,
serving test zones that accept dynamic updates signed with the key mail-update."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

SECRET = base64.b64encode(os.urandom(32)).decode()  # named's mail-update key
OTHER = base64.b64encode(os.urandom(32)).decode()  # named's other key, granted nothing
WRONG = base64.b64encode(os.urandom(32)).decode()  # named knows no key with this secret
SECRETS = (SECRET, OTHER, WRONG)
# Zones the key mail-update may update and transfer; locked.test may be transferred, not updated.
ZONES = ("example.test", "change.test", "ttl.test", "site.test", "other.test", "role.test", "dane.test", "gone.test",
         "live.test", "query.test", "ns.test", "2.0.192.in-addr.arpa")
# Relative names, so the one file serves every zone; mx1 needs its address: BIND refuses an update after which
# an in-zone MX target has none (check-integrity). The CAA record at the apex is the user's (their web server's).
ZONE_FILE = """$TTL 300
@ SOA ns1 hostmaster 1 3600 600 86400 300
@ NS ns1
ns1 A 127.0.0.1
@ MX 10 mx1
mx1 A 192.0.2.10
@ TXT "google-site-verification=abc"
@ TXT "v=spf1 a -all"
@ CAA 0 issue "pki.goog"
google._domainkey TXT "v=DKIM1; k=rsa; p=GOOGLE"
20200101._domainkey TXT "v=DKIM1; k=rsa; p=OLD"
"""
REVERSE_ZONE_FILE = """$TTL 300
@ SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300
@ NS ns1.example.test.
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def named_conf(directory: Path, port: int) -> str:
    zones = "".join(f'zone "{zone}" {{ type primary; file "{zone}.db"; update-policy {{ grant mail-update zonesub '
                    f'ANY; }}; allow-transfer {{ key "mail-update"; }}; }};\n' for zone in ZONES)
    return f"""options {{
    directory "{directory}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "named.pid";
    session-keyfile "session.key";
    recursion no;
    dnssec-validation no;
}};
controls {{ }};
key "mail-update" {{ algorithm hmac-sha256; secret "{SECRET}"; }};
key "other" {{ algorithm hmac-sha256; secret "{OTHER}"; }};
{zones}zone "locked.test" {{ type primary; file "locked.test.db"; allow-update {{ none; }};
    allow-transfer {{ key "mail-update"; }}; }};
"""


def _answers(server: tuple[str, int]) -> bool:
    try:
        response = dns.query.udp(dns.message.make_query("locked.test", "SOA"), server[0], port=server[1], timeout=1)
    except (OSError, dns.exception.DNSException):
        return False
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


def start(directory: Path) -> tuple[subprocess.Popen, str]:
    """named serving the test zones from directory, once it answers; (process, "127.0.0.1#port").

    Without -u named never changes user; as root it drops capabilities such as CAP_DAC_OVERRIDE, so it writes
    the zone journals (.jnl) only because it owns this directory. `controls {}` keeps it off the rndc port."""
    binary = shutil.which("named") or shutil.which("named", path="/usr/sbin:/sbin")
    if binary is None:
        raise RuntimeError("named not found: install bind9 (Debian package; .ci/run installs it)")
    port = free_port()
    for zone in (*ZONES, "locked.test"):
        (directory / f"{zone}.db").write_text(REVERSE_ZONE_FILE if zone.endswith(".arpa") else ZONE_FILE)
    (directory / "named.conf").write_text(named_conf(directory, port))
    with open(directory / "named.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen([binary, "-g", "-c", str(directory / "named.conf"), "-p", str(port)],
                                   cwd=directory, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not _answers(("127.0.0.1", port)):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"named did not start:\n{(directory / 'named.log').read_text()[-3000:]}")
        time.sleep(0.05)
    return process, f"127.0.0.1#{port}"
