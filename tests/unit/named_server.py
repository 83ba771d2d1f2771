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
# an in-zone MX target has none (check-integrity).
ZONE_HEAD = """$TTL 300
@ SOA ns1 hostmaster 1 3600 600 86400 300
@ NS ns1
ns1 A 127.0.0.1
@ MX 10 mx1
mx1 A 192.0.2.10
"""
# The CAA record at the apex is the user's (their web server's).
ZONE_FILE = ZONE_HEAD + """@ TXT "google-site-verification=abc"
@ TXT "v=spf1 a -all"
@ CAA 0 issue "pki.goog"
google._domainkey TXT "v=DKIM1; k=rsa; p=GOOGLE"
20200101._domainkey TXT "v=DKIM1; k=rsa; p=OLD"
"""
# Served as written, never updated: SPF records that include one another (test__spf_live.py). spf.test
# authorises its MX host and, through relay.spf.test and its own include, the relay's networks; big.spf.test
# needs 3 lookups at its top level but 12 counted through its includes (RFC 7208 4.6.4 allows 10).
SPF_ZONE_FILE = ZONE_HEAD + """mx1 AAAA 2001:db8::10
@ TXT "v=spf1 mx include:relay.spf.test -all"
relay TXT "v=spf1 include:inner.relay.spf.test -all"
inner.relay TXT "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:25::/48 -all"
soft TXT "v=spf1 ip4:198.51.100.0/24 ~all"
big TXT "v=spf1 mx:spf.test include:part1.spf.test include:part2.spf.test -all"
part1 TXT "v=spf1 a:h1.spf.test a:h2.spf.test a:h3.spf.test a:h4.spf.test -all"
part2 TXT "v=spf1 a:h5.spf.test include:part3.spf.test -all"
part3 TXT "v=spf1 a:h6.spf.test a:h7.spf.test a:h8.spf.test -all"
broken TXT "v=spf1 mx:spf.test include:missing.spf.test -all"
h1 A 203.0.113.1
h2 A 203.0.113.2
h3 A 203.0.113.3
h4 A 203.0.113.4
h5 A 203.0.113.5
h6 A 203.0.113.6
h7 A 203.0.113.7
h8 A 203.0.113.8
"""
STATIC_ZONES = {"spf.test": SPF_ZONE_FILE}
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
    zones += "".join(f'zone "{zone}" {{ type primary; file "{zone}.db"; }};\n' for zone in STATIC_ZONES)
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
    for zone, text in STATIC_ZONES.items():
        (directory / f"{zone}.db").write_text(text)
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
