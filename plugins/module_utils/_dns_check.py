# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is a TXT record visible, with exactly the expected value, on every name server that serves it?

dnspython does the asking; the decision is plain code over its answers, so unit tests pass a made-up `ask`.
Anything but an exact answer from every server (no record, another value, an extra record, a server that
cannot be reached or does not answer in time) is "not yet": never "go ahead".
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable

try:
    import dns.exception
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdatatype
    import dns.resolver
except ImportError:
    # Only dkim_keys state=rotate asks DNS: it fails with missing_required_lib and this traceback.
    DNSPYTHON_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    DNSPYTHON_IMPORT_ERROR = None

TIMEOUT = 5.0  # seconds per server and question
# Worst first: the status of a record is the worst any server gave.
SEVERITY = ("unreachable", "timeout", "mismatch", "absent", "visible")


def ask_server(name: str, server: str, timeout: float = TIMEOUT) -> list[str] | None:
    """The TXT values at name on this server (an address, or address#port as dig writes it; strings of a
    record joined), [] for NXDOMAIN or no TXT record. Raises dns.exception.Timeout, or OSError when the
    server cannot be reached."""
    address, separator, port = server.partition("#")
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    response = dns.query.udp_with_fallback(query, address, timeout=timeout, port=int(port or 53))[0]
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise OSError(f"{server} answered {dns.rcode.to_text(response.rcode())} for {name}")
    values = []
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.TXT and rrset.name == dns.name.from_text(name):
            values += [b"".join(rdata.strings).decode("ascii", "replace") for rdata in rrset]
    return values


def server_status(name: str, expected: str, server: str,
                  ask: Callable[[str, str], list[str] | None] = ask_server) -> str:
    """visible, absent, mismatch, timeout or unreachable: what one server says about the record."""
    try:
        values = ask(name, server)
    except dns.exception.Timeout:
        return "timeout"
    except (OSError, dns.exception.DNSException):
        return "unreachable"
    if not values:
        return "absent"
    # One record with exactly the value: a second TXT record at the name would make verifiers fail.
    return "visible" if values == [expected] else "mismatch"


def record_status(name: str, expected: str, servers: Iterable[str],
                  ask: Callable[[str, str], list[str] | None] = ask_server) -> str:
    """The worst status any of the servers gives; no server at all is "unreachable"."""
    statuses = [server_status(name, expected, server, ask) for server in servers]
    return min(statuses, key=SEVERITY.index) if statuses else "unreachable"


def authoritative_servers(domain: str, resolver: dns.resolver.Resolver | None = None) -> list[str]:
    """The addresses of the name servers of the zone that holds `domain` (its NS records, resolved)."""
    resolver = resolver or dns.resolver.Resolver()
    zone = dns.resolver.zone_for_name(domain, resolver=resolver)
    addresses = []
    for ns in resolver.resolve(zone, "NS"):
        for rdtype in ("A", "AAAA"):
            try:
                addresses += [rdata.address for rdata in resolver.resolve(ns.target, rdtype)]
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
    return sorted(set(addresses))
