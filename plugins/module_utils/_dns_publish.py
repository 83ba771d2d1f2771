# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Publishing the mail records of one zone by dynamic update (RFC 2136) signed with TSIG (RFC 8945).

dnspython speaks the protocol: AXFR to read the zone, one UPDATE message to change it, both over TCP with the
same key. Deciding what to change is a plain function (`plan`) over the wanted records and the live zone.

What the collection owns in a zone, for each mail domain D of it (nothing else is ever changed or removed):
- at D itself: the whole MX rrset, and of the TXT records only the SPF ones (joined value "v=spf1", alone
  or followed by a space, in any case; RFC 7208 4.5): a "google-site-verification=..." beside it is the user's;
- every record of the published type at _dmarc.D, _mta-sts.D, _smtp._tls.D (TXT), mta-sts.D (A, AAAA, CAA),
  _submission._tcp.D, _submissions._tcp.D, _imap._tcp.D, _imaps._tcp.D (SRV, RFC 6186 and 8314);
- DKIM keys <selector>._domainkey.D (TXT) whose selector is the collection's (a date first: 20261125,
  20261125-ed25519, 20261125-mx1-ed25519, 20261125-2); `google`, `s1`, `selector1` are other senders';
- the A and AAAA records of the names the wanted records give addresses to; of each host the wanted MX
  records name, the TLSA records at _25._tcp.<host> and the CAA records at <host> (every tag: the names the
  mail certificates cover; never at a mail domain D itself, whose CAA records bind the user's other
  certificates);
- every wanted rrset, except the shared TXT rrset at D.
A domain removed from the site (withdrawn) is one of the zone's mail domains whose only wanted records are its
DKIM keys still published: the rest of the above is removed.
Records are dicts {name, type, ttl, values} as _dns_records makes them: absolute names, TXT values as lists
of character-strings, other values in presentation form with absolute names (a name without its final dot
is read as absolute too).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import traceback
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import List, Union

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.rdtypes.ANY.TXT
    import dns.tsig
    import dns.update
    import dns.xfr
    import dns.zone
except ImportError:
    # The publishing module fails with missing_required_lib and this traceback.
    DNSPYTHON_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    DNSPYTHON_IMPORT_ERROR = None

from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import TLSA_PREFIX, fqdn, zone_fragment

TIMEOUT = 10.0  # seconds per message
# hmac-sha256 or stronger is recommended; the rest are accepted for old servers (RFC 8945 6).
ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1", "hmac-md5")
# Names under a mail domain that are entirely the collection's, with the types it publishes there.
OWNED_NAMES = {
    "_dmarc": ("TXT",), "_mta-sts": ("TXT",), "_smtp._tls": ("TXT",), "mta-sts": ("A", "AAAA", "CAA"),
    "_submission._tcp": ("SRV",), "_submissions._tcp": ("SRV",), "_imap._tcp": ("SRV",), "_imaps._tcp": ("SRV",),
}
DKIM_SELECTOR = re.compile(r"^[0-9]{8}(-[a-z0-9]+)*$")  # as _dkim_keyring.selector_for makes them
_SERVER = re.compile(r"^(?P<address>[0-9A-Fa-f.:]+)(?:#(?P<port>[0-9]{1,5}))?$")


Value = Union[str, List[str]]  # a record's value: TXT as its character-strings, others as presentation text


class DnsPublishError(ValueError):
    """Records cannot be published; the message says what is wrong (never a secret)."""


def zone_for(name: str, zones: Iterable[str]) -> str | None:
    """The zone (of zones) that holds name: the longest one name is in or equal to; None when none does."""
    name = fqdn(name).lower()
    holding = [zone for zone in zones if name == fqdn(zone).lower() or name.endswith("." + fqdn(zone).lower())]
    return max(holding, key=lambda zone: len(fqdn(zone)), default=None)


def tsig_key(name: str, algorithm: str, secret: str) -> dns.tsig.Key:
    """The TSIG key for dns.update.UpdateMessage(keyring=...) and AXFR; hmac-sha256 or stronger is
    recommended, the older algorithms are for servers that have nothing better."""
    if algorithm not in ALGORITHMS:
        raise DnsPublishError(f"TSIG algorithm {algorithm!r} of key {name} is not one of {', '.join(ALGORITHMS)}")
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raw = b""
    if not raw:
        raise DnsPublishError(f"TSIG secret of key {name} is not base64") from None
    try:
        # dnspython names hmac-md5 by its old name (RFC 2845); the others by theirs.
        return dns.tsig.Key(name, raw, dns.tsig.HMAC_MD5 if algorithm == "hmac-md5" else algorithm)
    except dns.exception.DNSException as exc:
        raise DnsPublishError(f"TSIG key name {name!r} is not a DNS name: {exc}") from None


def parse_server(server: str) -> tuple[str, int]:
    """(address, port) of an IP address, optionally followed by #port as dig writes it (192.0.2.1#5353,
    2001:db8::1#53)."""
    match = _SERVER.match(server) if isinstance(server, str) else None
    try:
        address = str(ipaddress.ip_address(match["address"])) if match else ""
    except ValueError:
        address = ""
    port = int(match["port"] or 53) if match else 0
    if not address or not 0 < port < 65536:
        raise DnsPublishError(f"DNS server {server!r} must be an IP address, optionally followed by #port")
    return address, port


def is_spf(value: Value) -> bool:
    joined = ("".join(value) if isinstance(value, list) else value).lower()
    return joined == "v=spf1" or joined.startswith("v=spf1 ")


def owned(name: str, rdtype: str, value: Value, domains: Iterable[str],
          hosts: Collection[str] = (), mx_hosts: Collection[str] = ()) -> bool:
    """Is this record the collection's (module docstring)? domains: the mail domains of the zone; hosts:
    the names the wanted records give addresses to; mx_hosts: the names the wanted MX records point to."""
    name, rdtype = fqdn(name).lower(), rdtype.upper()
    hosts, mx_hosts = {fqdn(h).lower() for h in hosts}, {fqdn(h).lower() for h in mx_hosts}
    domains = [fqdn(d).lower() for d in domains]
    if rdtype in ("A", "AAAA") and name in hosts:
        return True
    if rdtype == "TLSA" and name.startswith(TLSA_PREFIX) and name.removeprefix(TLSA_PREFIX) in mx_hosts:
        return True
    if rdtype == "CAA" and name in mx_hosts and name not in domains:
        return True
    for domain in domains:
        if name == domain:
            return rdtype == "MX" or (rdtype == "TXT" and is_spf(value))
        if not name.endswith("." + domain):
            continue
        label = name.removesuffix("." + domain)
        if rdtype in OWNED_NAMES.get(label, ()):
            return True
        if rdtype == "TXT" and label.endswith("._domainkey"):
            return bool(DKIM_SELECTOR.match(label.removesuffix("._domainkey")))
    return False


def _rdata(name: str, rdtype: str, value: Value) -> dns.rdata.Rdata:
    """value as a dnspython rdata (TXT: its character-strings as given; others: from presentation text)."""
    try:
        if rdtype == "TXT":
            strings = [value] if isinstance(value, str) else value
            return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT,
                                           [s.encode("utf-8", "surrogateescape") for s in strings])
        return dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False)
    except (dns.exception.DNSException, ValueError, TypeError) as exc:
        raise DnsPublishError(f"{name} {rdtype} {value!r} is not a valid record: {exc}") from None


def record_value(rdata: dns.rdata.Rdata) -> Value:
    """The record form of a dnspython rdata; the inverse of _rdata."""
    if rdata.rdtype == dns.rdatatype.TXT:
        return [s.decode("utf-8", "surrogateescape") for s in rdata.strings]
    return rdata.to_text()


def _same(rdata: dns.rdata.Rdata) -> object:
    """What makes two rdatas the same record: TXT compares the joined strings, however they are split (a
    verifier joins them, RFC 7208 3.3, RFC 6376 3.6.2.2); others the canonical form (names in any case)."""
    return b"".join(rdata.strings) if rdata.rdtype == dns.rdatatype.TXT else rdata


def identities(name: str, rdtype: str, values: Iterable[Value]) -> dict[object, Value]:
    """{comparison key: value} of an rrset's values, first spelling of each record kept."""
    result: dict[object, Value] = {}
    for value in values:
        result.setdefault(_same(_rdata(name, rdtype, value)), value)
    return result


def _rrsets(records: Iterable[Mapping]) -> dict[tuple[str, str], dict]:
    """{(name, type): {ttl, values}} with names in lower case; records of one rrset are merged."""
    rrsets: dict[tuple[str, str], dict] = {}
    for record in records:
        key = (fqdn(record["name"]).lower(), str(record["type"]).upper())
        ttl = record["ttl"]
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl < 2**31:
            raise DnsPublishError(f"{key[0]} {key[1]}: TTL {ttl!r} is not a number of seconds")
        rrset = rrsets.setdefault(key, {"ttl": ttl, "values": []})
        if rrset["ttl"] != ttl:
            raise DnsPublishError(f"{key[0]} {key[1]} is wanted with two TTLs, {rrset['ttl']} and {ttl}")
        rrset["values"].extend(record["values"])
    return rrsets


@dataclass
class Plan:
    """The records to add, change and remove; a change also holds the live rrset as `before` {ttl, values}."""

    add: list[dict] = field(default_factory=list)
    change: list[dict] = field(default_factory=list)
    remove: list[dict] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.add or self.change or self.remove)

    def diff(self) -> dict[str, str]:
        """Ansible's diff: the changed records before and after, as zone file lines."""
        before = [{**r, **r["before"]} for r in self.change] + self.remove
        after = self.add + self.change
        return {"before": zone_fragment(before) if before else "", "after": zone_fragment(after) if after else ""}


def plan(wanted: Iterable[Mapping], live: Mapping[tuple[str, str], Mapping], domains: Iterable[str]) -> Plan:
    """What makes the owned records of the zone exactly the wanted ones; live: read_zone's answer."""
    want = _rrsets(wanted)
    have = _rrsets({"name": name, "type": rdtype, **rrset} for (name, rdtype), rrset in live.items())
    domains = [fqdn(d).lower() for d in domains]
    hosts = {name for name, rdtype in want if rdtype in ("A", "AAAA")}
    mx_hosts = {str(_rdata(name, "MX", value).exchange).lower()
                for (name, rdtype), rrset in want.items() if rdtype == "MX" for value in rrset["values"]}
    result = Plan()
    for name, rdtype in sorted(set(want) | set(have)):
        wanted_rrset, live_rrset = want.get((name, rdtype)), have.get((name, rdtype), {"ttl": 0, "values": []})
        new = identities(name, rdtype, wanted_rrset["values"] if wanted_rrset else [])
        whole = wanted_rrset is not None and not (rdtype == "TXT" and name in domains)
        mine = [value for value in live_rrset["values"]
                if wanted_rrset or owned(name, rdtype, value, domains, hosts, mx_hosts)]
        old = {key: value for key, value in identities(name, rdtype, mine).items()
               if whole or key in new or owned(name, rdtype, value, domains, hosts, mx_hosts)}
        record = {"name": name, "type": rdtype}
        if not old and not new:
            continue
        if not old:
            result.add.append({**record, "ttl": wanted_rrset["ttl"], "values": list(new.values())})
        elif not new:
            result.remove.append({**record, "ttl": live_rrset["ttl"], "values": list(old.values())})
        elif old.keys() != new.keys() or live_rrset["ttl"] != wanted_rrset["ttl"]:
            result.change.append({**record, "ttl": wanted_rrset["ttl"], "values": list(new.values()),
                                  "before": {"ttl": live_rrset["ttl"], "values": list(old.values())}})
    return result


def updates(changes: Plan) -> tuple[list[tuple[str, str, Value]], list[tuple[str, int, str, Value]]]:
    """(deletions [(name, type, value)], additions [(name, ttl, type, value)]), one per record.

    Only records are deleted, never an rrset, which may hold a user's records. A TTL change deletes the
    rrset's owned records and adds the wanted ones with the new TTL. BIND 9.18 keeps one TTL per rrset: any
    record added, new or already there, sets the TTL of the whole rrset, also of the records the update
    leaves alone, so the user's apex TXT records take the SPF record's TTL (tested against named).
    """
    deletions = [(r["name"], r["type"], value) for r in changes.remove for value in r["values"]]
    additions = [(r["name"], r["ttl"], r["type"], value) for r in changes.add for value in r["values"]]
    for r in changes.change:
        old = identities(r["name"], r["type"], r["before"]["values"])
        new = identities(r["name"], r["type"], r["values"])
        same_ttl = r["before"]["ttl"] == r["ttl"]
        deletions += [(r["name"], r["type"], v) for key, v in old.items() if not (same_ttl and key in new)]
        additions += [(r["name"], r["ttl"], r["type"], v) for key, v in new.items() if not (same_ttl and key in old)]
    return deletions, additions


def _key_name(key: dns.tsig.Key) -> str:
    return key.name.to_text(omit_final_dot=True)


@contextmanager
def _talking(zone: str, server: str, key: dns.tsig.Key | None, what: str) -> Iterator[None]:
    """The failures of the network and of TSIG while talking to server, as DnsPublishError."""
    try:
        yield
    except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.BadAlgorithm, dns.tsig.BadTime,
            dns.message.UnknownTSIGKey) as exc:
        clock = isinstance(exc, (dns.tsig.PeerBadTime, dns.tsig.BadTime))
        raise _key_refused(zone, server, key, clock) from None
    except (dns.exception.Timeout, OSError, EOFError):
        raise DnsPublishError(f"{server} did not answer for {zone} ({what})") from None
    except dns.exception.DNSException as exc:
        raise DnsPublishError(f"{server} gave no usable answer for {zone} ({what}): {exc}") from None


def _key_refused(zone: str, server: str, key: dns.tsig.Key | None, clock: bool = False) -> DnsPublishError:
    return DnsPublishError(f"{server} refused the TSIG key {_key_name(key)} for {zone} (wrong name, algorithm or "
                           f"secret, or the key may not update this zone"
                           f"{'; or the clocks differ by more than 5 minutes' if clock else ''})")


def check_served(zone: str, server: str, timeout: float = TIMEOUT) -> None:
    """Raise unless server answers authoritatively (AA) with the SOA of exactly this zone."""
    address, port = parse_server(server)
    with _talking(zone, server, None, "SOA"):
        response = dns.query.tcp(dns.message.make_query(zone, "SOA"), address, port=port, timeout=timeout)
    origin = dns.name.from_text(zone)
    if not (response.flags & dns.flags.AA and response.rcode() == dns.rcode.NOERROR
            and any(rrset.name == origin and rrset.rdtype == dns.rdatatype.SOA for rrset in response.answer)):
        raise DnsPublishError(f"{zone} is not served by {server} (no authoritative SOA)")


def read_zone(zone: str, server: str, key: dns.tsig.Key, timeout: float = TIMEOUT) -> dict[tuple[str, str], dict]:
    """{(name, type): {ttl, values}} of every rrset of the zone (lower-case absolute names), by AXFR over TCP
    signed with key."""
    check_served(zone, server, timeout)
    address, port = parse_server(server)
    live = dns.zone.Zone(zone, relativize=False)
    query = dns.xfr.make_query(live, keyring=key)[0]
    with _talking(zone, server, key, "AXFR"):
        try:
            dns.query.inbound_xfr(address, live, query, port=port, timeout=timeout)
        except dns.xfr.TransferError as exc:
            if exc.rcode not in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
                raise DnsPublishError(f"{server} answered {dns.rcode.to_text(exc.rcode)} to a zone transfer of "
                                      f"{zone}") from None
            raise DnsPublishError(f"{server} refused a zone transfer of {zone} to key {_key_name(key)}: allow it "
                                  f"(BIND: allow-transfer {{ key \"{_key_name(key)}\"; }};)") from None
    return {(name.to_text().lower(), dns.rdatatype.to_text(rdataset.rdtype)):
            {"ttl": rdataset.ttl, "values": [record_value(rdata) for rdata in rdataset]}
            for name, rdataset in live.iterate_rdatasets()}


def apply(zone: str, server: str, key: dns.tsig.Key, changes: Plan, timeout: float = TIMEOUT) -> None:
    """Send the plan as one UPDATE of the zone over TCP (all or nothing), signed with key; nothing when empty."""
    if not changes.changed:
        return
    origin = dns.name.from_text(zone)
    deletions, additions = updates(changes)
    for name, *_rest in deletions + additions:
        if not dns.name.from_text(fqdn(name)).is_subdomain(origin):
            raise DnsPublishError(f"{name} is not in zone {zone}")
    check_served(zone, server, timeout)
    update = dns.update.UpdateMessage(origin, keyring=key)
    for name, rdtype, value in deletions:
        update.delete(fqdn(name), _rdata(name, rdtype, value))
    for name, ttl, rdtype, value in additions:
        update.add(fqdn(name), ttl, _rdata(name, rdtype, value))
    address, port = parse_server(server)
    with _talking(zone, server, key, "UPDATE"):
        rcode = dns.query.tcp(update, address, port=port, timeout=timeout).rcode()
    if rcode == dns.rcode.NOERROR:
        return
    if rcode == dns.rcode.NOTAUTH:
        raise _key_refused(zone, server, key)
    if rcode == dns.rcode.REFUSED:
        # BIND also refuses an update after which the zone fails check-integrity (an in-zone MX or SRV target
        # without address records), with a log line saying so.
        raise DnsPublishError(f"{server} refused the update of {zone} (update-policy / allow-update does not grant "
                              f"key {_key_name(key)}, or the zone would fail a check such as an MX target without "
                              "address records: see the server's log)")
    if rcode == dns.rcode.NOTZONE:
        raise DnsPublishError(f"{zone} is not served by {server} (NOTZONE)")
    raise DnsPublishError(f"{server} answered {dns.rcode.to_text(rcode)} to the update of {zone}")
