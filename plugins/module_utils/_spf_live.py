# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An SPF policy evaluated as receivers evaluate it, through live DNS, with pyspf (RFC 7208).

_dns_records counts the DNS lookups of a record at its top level only; the limit of RFC 7208 4.6.4 (10 terms
that query DNS, include:, a, mx, ptr, exists: and redirect=, counted through every include: and redirect=, and
2 void lookups) holds for the whole evaluation, which only following the includes can tell. pyspf does that
evaluation; its DNS lookups go to the resolvers given here and nowhere else (never the system's resolver).
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Iterable, Iterator

from ansible_collections.opendove.mailserver.plugins.module_utils._dns_publish import DnsPublishError, parse_server

SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4
# The client address the lookup count is evaluated for: one no policy authorises (0.0.0.0/8, "this network",
# RFC 1122 3.2.1.3, never a sender), so every term before -all is evaluated and every include followed.
UNMATCHED_ADDRESS = "0.0.0.1"
_PYSPF_LOOKUP = threading.Lock()


class SpfLiveError(ValueError):
    """The check cannot run (pyspf missing, no resolver, a bad address); the message says why."""


def _spf_module():
    # Imported here: the rest of the collection runs without pyspf.
    try:
        import spf  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise SpfLiveError("the SPF checks need the Python package pyspf (pip install pyspf) on the host they run "
                           "on, usually the controller") from exc
    return spf


def _resolver(resolver_addresses: Iterable[str], timeout: float):
    import dns.nameserver  # pylint: disable=import-outside-toplevel
    import dns.resolver  # pylint: disable=import-outside-toplevel

    nameservers = []
    for server in resolver_addresses:
        try:
            address, port = parse_server(server)
        except DnsPublishError as exc:
            raise SpfLiveError(str(exc)) from None
        nameservers.append(dns.nameserver.Do53Nameserver(address, port))
    if not nameservers:
        raise SpfLiveError("the SPF checks need the resolvers to ask (never the system's, unless named)")
    # configure=False: /etc/resolv.conf is not read, so no other server is ever asked.
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = nameservers
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


@contextlib.contextmanager
def _lookups_through(spf, resolver) -> Iterator[None]:
    """pyspf's DNS lookups through resolver while the block runs.

    pyspf looks every name up with its module-level function DNSLookup(name, qtype, strict, timeout), which asks
    the system's resolver; it is replaced for the block, the same answers in the same shape as pyspf's own
    dnspython version (DNSLookup_dnspython) gives, and put back after.
    """
    import dns.exception  # pylint: disable=import-outside-toplevel
    import dns.resolver  # pylint: disable=import-outside-toplevel

    def lookup(name, qtype, strict=True, timeout=None):  # pylint: disable=unused-argument
        try:
            answers = resolver.resolve(name, qtype, search=False, lifetime=timeout or resolver.lifetime)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise spf.TempError(f"DNS {exc}") from None
        result = []
        for rdata in answers:
            if qtype in ("A", "AAAA"):
                result.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                result.append(((name, qtype), (rdata.preference, rdata.exchange.to_text(True))))
            elif qtype == "PTR":
                result.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                result.append(((name, qtype), rdata.strings))
        return result

    # One evaluation at a time per process: the function replaced is pyspf's, shared by every thread.
    with _PYSPF_LOOKUP:
        saved = spf.DNSLookup
        spf.DNSLookup = lookup
        try:
            yield
        finally:
            spf.DNSLookup = saved


def _evaluate(spf, domain: str, policy: str | None, address: str, timeout: float):
    """(result, explanation, lookups) of policy (None: the domain's published record) for a client address."""
    query = spf.query(i=address, s=f"postmaster@{domain}", h=domain, strict=True, timeout=timeout)
    result, _code, explanation = query.check(spf=policy)
    return result, explanation, query.lookups


def _check(name: str, ok: bool, detail: str) -> dict:
    return {"name": name, "status": "ok" if ok else "fail", "detail": detail}


def spf_checks(domain: str, spf_expected: str | None, addresses: Iterable[str], resolver_addresses: Iterable[str],
               timeout: float = 10) -> list[dict]:
    """The SPF policy of domain evaluated through live DNS, one result {name, status (ok or fail), detail} each.

    spf_expected: the record to evaluate (the value dns_records computes: its include:s and redirect=s are
    followed through live DNS, so it can be checked before it is published); None, the record domain publishes.
    addresses: the MX hosts' addresses; each must get `pass` for a message from postmaster@<domain>.
    resolver_addresses: the resolvers to ask, "192.0.2.53" or "192.0.2.53#5353" (the only servers asked).
    timeout: seconds for each lookup.

    The results, in order.
    "SPF lookups": the DNS-querying terms counted through every include: and redirect= (RFC 7208 4.6.4), failing
    over 10 or on a permanent error (a missing included record, more than 2 void lookups, two SPF records) or a
    temporary one (no answer).
    "SPF <address>" for each address: pass, or what a receiver would get (fail, softfail, neutral, permerror...).

    The dns_records module (state=query) calls it once per domain with the computed record: whether the
    published one is that record is the record check's job, this one's whether that record works. Raises
    SpfLiveError when the check cannot run at all (pyspf missing, no resolver, a malformed address).
    """
    spf = _spf_module()
    addresses = list(addresses)
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise SpfLiveError(f"{domain}: {address!r} is not an IP address") from None
    resolver = _resolver(resolver_addresses, timeout)
    policy = " ".join(spf_expected.split()) if spf_expected else None
    checks = []
    with _lookups_through(spf, resolver):
        result, explanation, lookups = _evaluate(spf, domain, policy, UNMATCHED_ADDRESS, timeout)
        if result == "none":
            checks.append(_check("SPF lookups", False, f"{domain} publishes no SPF record"))
        elif result in ("permerror", "temperror"):
            detail = f"{result}: {explanation}"
            if "Too many DNS lookups" in explanation:
                detail = (f"more than {SPF_LOOKUP_LIMIT} DNS lookups counted through include: and redirect= "
                          "(RFC 7208 4.6.4): receivers stop there with permerror, so mail from any address not "
                          "matched before fails SPF")
            checks.append(_check("SPF lookups", False, detail))
        else:
            checks.append(_check("SPF lookups", True, f"{lookups} of at most {SPF_LOOKUP_LIMIT} DNS lookups, "
                                                      "counted through include: and redirect="))
        for address in addresses:
            result, explanation, _lookups = _evaluate(spf, domain, policy, address, timeout)
            checks.append(_check(f"SPF {address}", result == "pass",
                                 "pass" if result == "pass" else f"{result}: {explanation}"))
    return checks
