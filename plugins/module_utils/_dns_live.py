# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The live check: does every authoritative server serve each record the site needs, exactly?

Per record and server the answer is one of (worst first):
- unreachable: the server did not answer, answered with an error, or not authoritatively;
- missing: no record of the type at the name;
- different: records there, not the expected ones;
- stale: what is served is the collection's but out of date (an old `_mta-sts` id, a retired DKIM selector);
- extra: the expected records, and more of the collection's kind beside them (a second SPF record, an MX
  host no longer in the site);
- ok.
A record's status is the worst any server gives. Records senders depend on fail the check; the mail clients'
SRV records and TLS reporting are advisory (reported, never failing). The questions are a function passed in
(`ask`), so unit tests answer them themselves. Beside the records, the MTA-STS policies served over HTTPS and the
MX hosts' SMTP certificates are checked the same way, address by address, each through a function passed in.
"""

from __future__ import annotations

import http.client
import smtplib
import socket
import ssl
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdatatype
    import dns.resolver
except ImportError:
    DNSPYTHON_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    DNSPYTHON_IMPORT_ERROR = None

from ansible_collections.opendove.mailserver.plugins.module_utils._dns_publish import (
    DnsPublishError,
    identities,
    is_spf,
    parse_server,
    record_value,
)
from ansible_collections.opendove.mailserver.plugins.module_utils import _mta_sts
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import TLSA_PREFIX, fqdn, tlsa_value

SEVERITY = ("unreachable", "fail", "missing", "different", "stale", "extra", "ok")
TIMEOUT = 5.0
SMTP_PORT = 25
# A certificate this close to its end is still ok, with a warning in its detail; the table shows warnings.
EXPIRY_WARNING_DAYS = 14
WARNING = "warning:"
# Names whose records only mail clients and report senders read: a problem there does not fail the check.
ADVISORY_LABELS = ("_submission._tcp.", "_submissions._tcp.", "_imap._tcp.", "_imaps._tcp.", "_smtp._tls.")


class NotAuthoritative(Exception):
    """The server answered, but not as an authority for the name (a referral, or a resolver's answer)."""


def ask_server(name: str, rdtype: str, server: str, timeout: float = TIMEOUT) -> list:
    """The values (record form: TXT as lists of strings, others presentation text) of the rrset at name on
    server; [] for no such name or type. Raises OSError, dns.exception.DNSException or NotAuthoritative."""
    address, port = parse_server(server)
    query = dns.message.make_query(fqdn(name), rdtype)
    query.flags &= ~dns.flags.RD
    response = dns.query.udp_with_fallback(query, address, timeout=timeout, port=port)[0]
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise OSError(f"answered {dns.rcode.to_text(response.rcode())}")
    if not response.flags & dns.flags.AA:
        raise NotAuthoritative("not authoritative for the name")
    wanted = dns.name.from_text(fqdn(name))
    return [record_value(rdata) for rrset in response.answer
            if rrset.name == wanted and rrset.rdtype == dns.rdatatype.from_text(rdtype) for rdata in rrset]


def _server_status(record: Mapping, got: list, stale: Iterable) -> str:
    name, rdtype = record["name"], record["type"]
    if rdtype == "TXT" and record["values"] and all(is_spf(v) for v in record["values"]):
        got = [value for value in got if is_spf(value)]  # the user's own TXT records beside SPF are not ours
    if not got:
        return "missing"
    expected, served = identities(name, rdtype, record["values"]), identities(name, rdtype, got)
    if served.keys() == expected.keys():
        return "ok"
    if served.keys() > expected.keys():
        return "extra"
    stale_keys = identities(name, rdtype, list(stale))
    if served.keys() & stale_keys.keys() or (name.startswith("_mta-sts.") and all(
            str(v[0] if isinstance(v, list) else v).startswith("v=STSv1") for v in got)):
        return "stale"
    return "different"


def check_record(record: Mapping, servers: Iterable[str], ask: Callable[[str, str, str], list],
                 stale: Iterable = ()) -> dict:
    """{name, type, status, advisory, servers: {server: status or what went wrong}} of one expected record."""
    by_server = {}
    for server in servers:
        try:
            by_server[server] = _server_status(record, ask(record["name"], record["type"], server), stale)
        except NotAuthoritative as exc:
            by_server[server] = f"unreachable: {exc}"
        except dns.exception.Timeout:
            by_server[server] = "unreachable: no answer in time"
        except (OSError, dns.exception.DNSException, DnsPublishError) as exc:
            by_server[server] = f"unreachable: {exc}"
    statuses = [status.split(":")[0] for status in by_server.values()] or ["unreachable"]
    return {"name": record["name"], "type": record["type"], "status": min(statuses, key=SEVERITY.index),
            "advisory": record["name"].startswith(ADVISORY_LABELS), "servers": by_server}


def check_withdrawn(name: str, rdtype: str, servers: Iterable[str], ask: Callable[[str, str, str], list]) -> dict | None:
    """A record the collection withdrew (a retired DKIM selector): "stale" while any server still serves it,
    None once none does (nothing to report)."""
    served = []
    for server in servers:
        try:
            if ask(name, rdtype, server):
                served.append(server)
        except (NotAuthoritative, OSError, dns.exception.DNSException, DnsPublishError):
            continue
    if not served:
        return None
    return {"name": fqdn(name), "type": rdtype, "status": "stale", "advisory": False,
            "servers": {server: "stale: still served" for server in served}}


def can_reach(address: str) -> bool:
    """Whether this host has a route to address (a UDP connect sends nothing; no route fails at once). Any
    other error (a link-local address without its interface, say) means it cannot be asked from here either."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((address, 53))
    except OSError:
        return False
    return True


def authoritative_servers(name: str, resolver: dns.resolver.Resolver,
                          reachable: Callable[[str], bool] = can_reach) -> list[str]:
    """The addresses of the name servers of the zone holding name that this host can reach. Raises
    DnsPublishError naming the servers when none can be asked (no IPv6 route and AAAA-only servers, say)."""
    try:
        zone = dns.resolver.zone_for_name(fqdn(name), resolver=resolver)
        targets = sorted(ns.target.to_text() for ns in resolver.resolve(zone, "NS"))
    except dns.exception.DNSException as exc:
        raise DnsPublishError(f"the name servers of {name} cannot be found: {exc}") from None
    addresses, unreachable, unresolved = [], [], []
    for target in targets:
        for rdtype in ("A", "AAAA"):
            try:
                found = [rdata.address for rdata in resolver.resolve(target, rdtype)]
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
            except dns.exception.DNSException as exc:
                # The zone's other servers can still be asked; this one is named if none can.
                unresolved.append(f"{target} ({rdtype} lookup failed: {exc})")
                continue
            addresses += [a for a in found if reachable(a)]
            unreachable += [f"{target} {a}" for a in found if not reachable(a)]
    if not addresses:
        raise DnsPublishError(f"no name server of {zone.to_text()} can be asked from here: " + ", ".join(
            [*unresolved, *unreachable, *([] if unresolved or unreachable else [", ".join(targets) + " (no address)"])])
            + (" (no route to their addresses)" if unreachable else ""))
    return sorted(set(addresses))


class _PolicyConnection(http.client.HTTPSConnection):
    """HTTPS to one address of the policy host, the TLS name (SNI, certificate check) and Host being its name:
    every address the records publish is checked, whatever the controller's resolver says."""

    def __init__(self, host: str, address: str, context: ssl.SSLContext, timeout: float, port: int = 443) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch_policy(domain: str, address: str, ca_file: str | None = None, timeout: float = TIMEOUT,
                 port: int = 443) -> str:
    """The MTA-STS policy served at https://mta-sts.<domain>/.well-known/mta-sts.txt by address, as RFC 8461
    3.3 has senders fetch it: a certificate valid for the name, status 200 without redirect, text/plain.
    Raises OSError (ssl.SSLError included) or ValueError saying what is wrong. port: 443 but in tests."""
    host = f"mta-sts.{domain}"
    connection = _PolicyConnection(host, address, ssl.create_default_context(cafile=ca_file), timeout, port)
    try:
        connection.request("GET", "/.well-known/mta-sts.txt")
        response = connection.getresponse()
        body = response.read(65536)
    finally:
        connection.close()
    if response.status != 200:
        raise ValueError(f"HTTP status {response.status}")
    if response.getheader("Content-Type", "").split(";")[0].strip().lower() != "text/plain":
        raise ValueError(f"Content-Type {response.getheader('Content-Type')!r} is not text/plain")
    return body.decode("utf-8", "replace")


def _ask_each_address(addresses: Iterable[str], status_of: Callable[[str], str],
                      reachable: Callable[[str], bool]) -> tuple[dict[str, str], str]:
    """({address: status_of(address)}, the worst status). An address this host has no route to (IPv6 without an
    IPv6 route) is named as not asked, and only fails the check when no address can be asked at all."""
    by_address, statuses = {}, []
    for address in addresses:
        if not reachable(address):
            by_address[address] = "not asked: no route from here"
            continue
        by_address[address] = status_of(address)
        statuses.append(by_address[address].split(":")[0])
    return by_address, min(statuses or ["unreachable"], key=SEVERITY.index)


def check_policy(domain: str, expected: str, addresses: Iterable[str],
                 fetch: Callable[[str, str], str], reachable: Callable[[str], bool] = can_reach) -> dict:
    """The policy each address of mta-sts.<domain> serves, against the text the `_mta-sts` id was made of."""
    def status_of(address: str) -> str:
        try:
            return "ok" if fetch(domain, address) == expected else "different: not the published policy"
        except (OSError, ValueError, http.client.HTTPException) as exc:
            return f"unreachable: {exc}"

    by_address, status = _ask_each_address(addresses, status_of, reachable)
    return {"name": f"https://mta-sts.{domain}/.well-known/mta-sts.txt", "type": "HTTPS", "status": status,
            "advisory": False, "servers": by_address}


class _MxConnection(smtplib.SMTP):
    """SMTP to one address of an MX host under the host's name: every address the records publish is checked,
    whatever the controller's resolver says."""

    def __init__(self, mx_name: str, address: str, port: int, timeout: float) -> None:
        self._address = address
        # smtplib keeps the host given here as the name starttls() sends (SNI) and verifies the certificate for.
        # The name this host greets with is given: smtplib's default (getfqdn) can wait on a reverse lookup.
        super().__init__(mx_name, port, local_hostname=socket.gethostname(), timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # The hook smtplib's own SMTP_SSL overrides: the connection goes to the address, not to the name.
        return socket.create_connection((self._address, port), timeout)


class SmtpCertificate(NamedTuple):
    """What an MX host's address serves after STARTTLS: the whole days left until its certificate expires, and
    that certificate (DER), whose key DANE senders compare with the host's TLSA records."""
    days_left: int
    der: bytes


def smtp_certificate(mx_name: str, address: str, ca_file: str | None = None, timeout: float = TIMEOUT,
                     port: int = SMTP_PORT) -> SmtpCertificate:
    """The certificate address serves for mx_name after STARTTLS, once it is verified as senders enforcing MTA-STS
    verify it (RFC 8461 4.2): valid for mx_name, in date, chaining to a CA of ca_file (None: the system's). Raises
    ValueError when STARTTLS is not offered, ssl.SSLError when TLS or the certificate fails
    (ssl.SSLCertVerificationError), other OSError (smtplib's errors included) when the host cannot be spoken to.
    port: 25 but in tests."""
    context = ssl.create_default_context(cafile=ca_file)
    with _MxConnection(mx_name, address, port, timeout) as smtp:
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            raise ValueError("no STARTTLS offered")
        smtp.starttls(context=context)
        expires = ssl.cert_time_to_seconds(smtp.sock.getpeercert()["notAfter"])
        der = smtp.sock.getpeercert(binary_form=True)
    return SmtpCertificate(int((expires - time.time()) // 86400), der)


def check_smtp_certificate(mx_name: str, addresses: Iterable[str], certificate: Callable[[str, str], SmtpCertificate],
                           tlsa_values: Iterable[str] = (), reachable: Callable[[str], bool] = can_reach) -> dict:
    """The certificate each address of an MX host serves after STARTTLS (certificate: smtp_certificate of the name
    and an address): a certificate senders would refuse (another name, expired, an unknown CA) or no STARTTLS
    fails, and so does, with tlsa_values (the host's TLSA records, tlsa_value's form), a key none of them names;
    one expiring within EXPIRY_WARNING_DAYS is ok with a warning."""
    expected_keys = frozenset(tlsa_values)

    def status_of(address: str) -> str:
        try:
            served = certificate(mx_name, address)
        except ssl.SSLCertVerificationError as exc:
            return f"fail: certificate: {exc.verify_message}"
        except ssl.SSLError as exc:
            return f"fail: TLS: {exc}"
        except ValueError as exc:
            return f"fail: {exc}"
        except smtplib.SMTPResponseException as exc:
            return f"unreachable: answered {exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace')}"
        except OSError as exc:
            return f"unreachable: {exc}"
        # DANE senders (RFC 7672 2.2) refuse a key the host's TLSA records do not name; without any, no DANE.
        if expected_keys and tlsa_value(ssl.DER_cert_to_PEM_cert(served.der)) not in expected_keys:
            return f"fail: the key served matches no TLSA record of {TLSA_PREFIX}{mx_name} (DANE senders refuse it)"
        if served.days_left < EXPIRY_WARNING_DAYS:
            return f"ok: {served.days_left} days left, {WARNING} fewer than {EXPIRY_WARNING_DAYS}, renew it"
        return f"ok: {served.days_left} days left"

    by_address, status = _ask_each_address(addresses, status_of, reachable)
    return {"name": f"smtp://{mx_name}:{SMTP_PORT} certificate", "type": "TLS", "status": status, "advisory": False,
            "servers": by_address}


def _rrsets(records: Iterable[Mapping]) -> list[dict]:
    """records with those of one rrset merged (the site model has one record per address, a server one rrset)."""
    merged: dict[tuple[str, str], dict] = {}
    for record in records:
        key = (fqdn(record["name"]).lower(), record["type"].upper())
        if key in merged:
            merged[key]["values"] = merged[key]["values"] + list(record["values"])
        else:
            merged[key] = dict(record, values=list(record["values"]))
    return list(merged.values())


def _values_by_name(records: Iterable[Mapping], rdtypes: Iterable[str]) -> dict[str, list[str]]:
    """{name: its values} of the records of rdtypes among records (("A", "AAAA"): each name's addresses)."""
    by_name: dict[str, list[str]] = {}
    for record in records:
        if record["type"] in rdtypes:
            by_name.setdefault(record["name"], []).extend(record["values"])
    return by_name


def _checked(record: Mapping, servers_for: Callable[[str], list[str]], ask: Callable[[str, str, str], list]) -> dict:
    try:
        servers = servers_for(record["name"])
    except DnsPublishError as exc:
        return {"name": record["name"], "type": record["type"], "status": "unreachable",
                "advisory": record["name"].startswith(ADVISORY_LABELS), "servers": {"name servers": str(exc)}}
    return check_record(record, servers, ask)


def site_report(computed: Mapping, domains: Iterable[Mapping], dkim_rings: Iterable[Mapping],
                servers_for: Callable[[str], list[str]], ask: Callable[[str, str, str], list],
                fetch: Callable[[str, str], str] | None, policy_mx: Iterable[str],
                certificate: Callable[[str, str], SmtpCertificate] | None = None) -> dict[str, list[dict]]:
    """{domain or "hosts": [check]}: every record of _dns_records.site_records (computed), the retired DKIM
    selectors of every host's ring (dkim_keys query results) that are still served, with fetch, the MTA-STS
    policy every address of mta-sts.<domain> serves against the one the `_mta-sts` id was made of, and, with
    certificate (smtp_certificate of a name and an address), the SMTP certificate every address of each MX host
    serves, its key against the host's TLSA records among computed when it has any."""
    dkim_rings, policy_mx = list(dkim_rings), list(policy_mx)
    report = {}
    for domain in domains:
        name, records = domain["name"], computed["domains"][domain["name"]]
        checks = [_checked(record, servers_for, ask) for record in _rrsets(records)]
        published = {record["name"] for record in records}
        for selector in sorted({s for ring in dkim_rings for s in ring.get(name, {}).get("retired", [])}):
            record_name = fqdn(f"{selector}._domainkey.{name}")
            if record_name in published:
                continue
            try:
                withdrawn = check_withdrawn(record_name, "TXT", servers_for(record_name), ask)
            except DnsPublishError:
                withdrawn = None  # the records of the name are reported unreachable already
            if withdrawn:
                checks.append(withdrawn)
        if fetch is not None and domain.get("mta_sts") is not None:
            addresses = _values_by_name(records, ("A", "AAAA")).get(fqdn(_mta_sts.policy_host(name)), [])
            checks.append(check_policy(name, _mta_sts.policy_text(domain["mta_sts"], policy_mx), addresses, fetch))
        report[name] = checks
    report["hosts"] = [_checked(record, servers_for, ask) for record in _rrsets(computed["hosts"])]
    if certificate is not None:
        # The hosts' address records are the MX hosts' (site_records); the TLS name has no trailing dot.
        tlsa = _values_by_name(computed["hosts"], ("TLSA",))
        report["hosts"] += [check_smtp_certificate(host.rstrip("."), addresses, certificate,
                                                   tlsa.get(fqdn(TLSA_PREFIX + host), []))
                            for host, addresses in _values_by_name(computed["hosts"], ("A", "AAAA")).items()]
    return report


def spf_policy(records: Iterable[Mapping], domain: str) -> str | None:
    """The SPF policy among a domain's computed records (its apex TXT record starting v=spf1), joined."""
    for record in records:
        if record["type"] == "TXT" and record["name"] == fqdn(domain):
            for value in record["values"]:
                if is_spf(value):
                    return "".join(value) if isinstance(value, list) else value
    return None


def spf_report(domain: str, check: Callable[[], list[dict]]) -> list[dict]:
    """The results of _spf_live.spf_checks (check) as report checks of type SPF: the lookups counted through
    every include (at most 10) and each MX address's result (pass expected); a check that cannot run at all
    (pyspf missing, no resolver) is one failing check saying why."""
    try:
        results = check()
    except ValueError as exc:  # _spf_live.SpfLiveError
        results = [{"name": "SPF evaluation", "status": "fail", "detail": str(exc)}]
    return [{"name": f"{fqdn(domain)} {result['name'].removeprefix('SPF ')}", "type": "SPF",
             "status": result["status"], "advisory": False, "servers": {"pyspf": result["detail"]}}
            for result in results]


def table(report: Mapping[str, list[dict]]) -> list[str]:
    """The report as lines: per group (a domain, or "hosts"), one line per record, problems first."""
    lines = []
    for group, checks in report.items():
        lines.append(f"{group}:")
        for check in sorted(checks, key=lambda c: (SEVERITY.index(c["status"]), c["name"], c["type"])):
            note = " (advisory)" if check["advisory"] and check["status"] != "ok" else ""
            # A problem shows what each server gave; an ok check only its warnings (a certificate near its end).
            shown = [f"{server}: {status}" for server, status in check["servers"].items()
                     if status != "ok" and (check["status"] != "ok" or WARNING in status)]
            detail = "  " + "; ".join(shown) if shown else ""
            lines.append(f"  {check['status']:<11} {check['type']:<5} {check['name']}{note}{detail}")
    return lines


def failed(report: Mapping[str, list[dict]]) -> list[dict]:
    """The checks that fail: any status but ok on a record senders depend on."""
    return [c for checks in report.values() for c in checks if c["status"] != "ok" and not c["advisory"]]
