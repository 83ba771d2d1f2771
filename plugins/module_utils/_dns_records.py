# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DNS records every mail domain needs, computed from the site model and what the hosts report.

Pure computation: nothing here resolves a name. Records are dicts {name, type, ttl, values} with absolute
names (trailing dot) so that a zone fragment can be included in any zone; TXT values are lists of
character-strings of at most 255 octets each (RFC 1035 3.3.14, RFC 7208 3.3).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping

from ansible_collections.opendove.mailserver.plugins.module_utils import _mta_sts
from ansible_collections.opendove.mailserver.plugins.module_utils._names import is_hostname, name_problem, split_address

TXT_STRING_MAX = 255
SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4
DEFAULT_SPF = "v=spf1 mx -all"
# The seed's published policy; every tag can be changed or (with null) left out.
DEFAULT_DMARC = {"p": "reject", "sp": "reject", "aspf": "s", "adkim": "s", "fo": "1"}
# Tag order of the record after v=DMARC1 (RFC 7489 6.4 requires v first; p is second by convention).
DMARC_TAG_ORDER = ("p", "sp", "np", "aspf", "adkim", "fo", "pct", "rf", "ri", "rua", "ruf")
_POLICY = {"none", "quarantine", "reject"}
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SPF_TERM = re.compile(
    r"^(?P<qualifier>[+?~-]?)(?P<mechanism>all|include|a|mx|ptr|ip4|ip6|exists)(?P<arg>[:/].*)?$"
)
_SPF_MODIFIER = re.compile(r"^(?P<name>redirect|exp)=(?P<arg>\S+)$")
_LOOKUP_TERMS = {"include", "a", "mx", "ptr", "exists", "redirect"}
# mail_spf_include entries: a bare domain (an include), or one of these terms, no qualifier (each authorises).
_SPF_INCLUDE_TERM = re.compile(r"^(?P<mechanism>include|a|mx|ip4|ip6)(?::(?P<arg>.*))?$")
_SPF_INCLUDE_FORMS = ("a domain (include:<domain>), include:<domain>, a, a:<domain>, mx:<domain>, "
                      "ip4:<address>[/<length>] or ip6:<address>[/<length>]")
# The SRV names mail clients look up (RFC 6186; submissions: RFC 8314 5.1) and the service each names.
CLIENT_SERVICES = (("_submissions._tcp", "submissions"), ("_submission._tcp", "submission"),
                   ("_imaps._tcp", "imaps"), ("_imap._tcp", "imap"))
DEFAULT_CLIENT_PORTS = {"submissions": 465, "submission": 587, "imaps": 993, "imap": 143}
# Where SMTP clients look for an MX host's TLSA records (RFC 7672 2.2.1: port 25 of the MX name).
TLSA_PREFIX = "_25._tcp."


class DnsRecordError(ValueError):
    """A record cannot be built from the given data; the message names what is wrong."""


def fqdn(name: str) -> str:
    """name with exactly one trailing dot."""
    return name.rstrip(".") + "."


def split_txt(value: str, limit: int = TXT_STRING_MAX) -> list[str]:
    """A TXT value as character-strings of at most `limit` octets, in order (ASCII values only)."""
    if not value.isascii():
        raise DnsRecordError(f"TXT value is not ASCII: {value[:40]!r}...")
    return [value[i:i + limit] for i in range(0, len(value), limit)] or [""]


def txt_record(name: str, value: str, ttl: int) -> dict:
    return {"name": fqdn(name), "type": "TXT", "ttl": ttl, "values": [split_txt(value)]}


def check_selector(selector: object) -> str:
    """A DKIM selector: one DNS label of lower-case letters, digits and inner hyphens."""
    if not isinstance(selector, str) or not _SELECTOR.match(selector):
        raise DnsRecordError(f"DKIM selector {selector!r} must be letters a-z, digits and inner hyphens "
                             "(one DNS label, at most 63 characters)")
    return selector


def dkim_txt_value(key_type: str, public_key_b64: str) -> str:
    """The DKIM key record (RFC 6376 3.6.1, RFC 8463): t=s forbids subdomains from using the key."""
    if key_type not in ("rsa", "ed25519"):
        raise DnsRecordError(f"DKIM key type {key_type!r} is not rsa or ed25519")
    return f"v=DKIM1; k={key_type}; h=sha256; t=s; p={public_key_b64}"


def spf_lookups(policy: str) -> int:
    """Number of DNS-querying terms of an SPF record (top level; included records count on their own)."""
    return sum(1 for term in _spf_terms(policy) if term in _LOOKUP_TERMS)


def _spf_terms(policy: str) -> list[str]:
    parts = policy.split()
    if not parts or parts[0] != "v=spf1":
        raise DnsRecordError(f"SPF policy {policy!r} must start with 'v=spf1'")
    names = []
    for part in parts[1:]:
        term, modifier = _SPF_TERM.match(part), _SPF_MODIFIER.match(part)
        if term:
            _check_spf_argument(policy, term["mechanism"], term["arg"])
            names.append(term["mechanism"])
        elif modifier:
            _check_spf_value(policy, modifier["name"], modifier["arg"])
            names.append(modifier["name"])
        else:
            raise DnsRecordError(f"SPF policy {policy!r}: {part!r} is not an SPF mechanism or modifier")
    return names


def _check_spf_argument(policy: str, mechanism: str, arg: str | None) -> None:
    needs_arg = mechanism in ("include", "exists", "ip4", "ip6")
    if needs_arg and not (arg and arg.startswith(":") and len(arg) > 1):
        raise DnsRecordError(f"SPF policy {policy!r}: {mechanism} needs ':' and a value")
    if mechanism == "all" and arg:
        raise DnsRecordError(f"SPF policy {policy!r}: 'all' takes no value")
    if arg and arg.startswith(":"):
        value = arg[1:]
        if mechanism in ("a", "mx"):
            value = value.partition("/")[0]  # a and mx may end in prefix lengths (a:out.example.net/24)
        _check_spf_value(policy, mechanism, value)


def _check_spf_value(policy: str, term_name: str, value: str) -> None:
    """The value of a mechanism or modifier (redirect=, exp=) of an operator's SPF policy."""
    # A macro (RFC 7208 7, %{i}) makes a domain only when a receiver evaluates the record.
    if "%" in value and term_name not in ("ip4", "ip6"):
        return
    problem = _spf_value_problem(term_name, value)
    if problem:
        raise DnsRecordError(f"SPF policy {policy!r}: {problem}")


def _spf_value_problem(term_name: str, value: str) -> str | None:
    """Why value is not what an SPF term takes after its ':' (or '='): ip4 and ip6 an address or network of that
    version, the others a domain name (whose labels may have underscores: include:_spf.example.net)."""
    if term_name in ("ip4", "ip6"):
        version = int(term_name[-1])
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value!r} is not an IPv{version} address or network (<address> or <address>/<length>)"
        if network.version != version:
            return f"{value!r} is an IPv{network.version} address; write ip{network.version}:{value}"
        return None
    problem = name_problem(value, underscores=True)
    return f"{value!r} is not a domain name: {problem}" if problem else None


def _spf_include_term(item: object) -> str:
    if not isinstance(item, str):
        raise DnsRecordError(f"{item!r} is a {type(item).__name__}, not a string")
    if item in ("mx", "all") or (item and item[0] in "+-~?"):
        raise DnsRecordError(f"{item!r} is not allowed: the policy already has mx and -all; give only what it "
                             "adds, without a qualifier")
    term = _SPF_INCLUDE_TERM.match(item)
    if term is None or (term["arg"] is None and term["mechanism"] != "a"):
        try:
            version = ipaddress.ip_network(item, strict=False).version
        except ValueError:
            pass
        else:
            raise DnsRecordError(f"{item!r} is an IPv{version} address; write ip{version}:{item}")
        # Anything else with a colon or an equals sign is a term this list does not take; the rest a domain.
        if ":" in item or "=" in item or "/" in item or " " in item:
            raise DnsRecordError(f"{item!r} is not {_SPF_INCLUDE_FORMS}")
        problem = name_problem(item, underscores=True)
        if problem:
            raise DnsRecordError(f"{item!r} is not {_SPF_INCLUDE_FORMS}: {problem}")
        return f"include:{item}"
    if term["arg"] is not None:
        problem = _spf_value_problem(term["mechanism"], term["arg"])
        if problem:
            raise DnsRecordError(f"{item!r}: {problem}")
    return item


def spf_include_terms(include: object) -> list[str]:
    """The terms mail_spf_include adds to the default SPF policy, each once, in order: a bare domain becomes
    include:<domain>; include:, a, a:, mx:, ip4: and ip6: terms stay as written (no qualifier: each authorises).
    None is none. Raises DnsRecordError naming the entry."""
    if include is None:
        return []
    if isinstance(include, (str, bytes)) or not isinstance(include, (list, tuple)):
        raise DnsRecordError(f"must be a list of {_SPF_INCLUDE_FORMS}, not a {type(include).__name__}")
    terms: list[str] = []
    for index, item in enumerate(include):
        try:
            term = _spf_include_term(item)
        except DnsRecordError as exc:
            raise DnsRecordError(f"entry {index}: {exc}") from None
        if term not in terms:
            terms.append(term)
    return terms


def default_spf(include_terms: Iterable[str] = ()) -> str:
    """The policy of a domain without its own spf: the MX hosts, then include_terms (spf_include_terms), -all."""
    return " ".join(["v=spf1", "mx", *include_terms, "-all"])


def spf_value(policy: str | None, include_terms: Iterable[str] = ()) -> str:
    """The SPF record, validated: known terms only, at most 10 DNS lookups (top level; _spf_live counts through
    includes). Without a policy, default_spf(include_terms)."""
    policy = " ".join((policy or default_spf(include_terms)).split())
    lookups = spf_lookups(policy)
    if lookups > SPF_LOOKUP_LIMIT:
        raise DnsRecordError(f"SPF policy {policy!r} needs {lookups} DNS lookups; RFC 7208 allows "
                             f"{SPF_LOOKUP_LIMIT}")
    return policy


def _report_uris(domain: str, label: str, addresses: object) -> list[str]:
    if isinstance(addresses, str):
        addresses = [addresses]
    if not isinstance(addresses, list):
        raise DnsRecordError(f"{domain}: {label} must be a list of mailto: addresses")
    uris = []
    for entry in addresses:
        address = entry.removeprefix("mailto:") if isinstance(entry, str) else None
        if address is None or split_address(address.split("!")[0]) is None:
            raise DnsRecordError(f"{domain}: {label} entry {entry!r} is not a mailto: address")
        uris.append(f"mailto:{address}")
    return uris


def dmarc_tags(domain: str, settings: Mapping | None) -> dict[str, str]:
    """The DMARC tags of a domain: the defaults overridden by its settings; a null value drops a tag."""
    merged: dict[str, object] = dict(DEFAULT_DMARC)
    for tag, value in (settings or {}).items():
        if tag not in DMARC_TAG_ORDER:
            raise DnsRecordError(f"{domain}: unknown DMARC tag {tag!r} (known: {', '.join(DMARC_TAG_ORDER)})")
        merged[tag] = value
    tags: dict[str, str] = {}
    for tag in DMARC_TAG_ORDER:
        value = merged.get(tag)
        if value is None or (tag in ("rua", "ruf") and not value):
            continue
        tags[tag] = _dmarc_value(domain, tag, value)
    if "p" not in tags:
        raise DnsRecordError(f"{domain}: DMARC p (the policy) is required")
    return tags


def _dmarc_value(domain: str, tag: str, value: object) -> str:
    def bad(expected: str) -> DnsRecordError:
        return DnsRecordError(f"{domain}: DMARC {tag}={value!r} is invalid; expected {expected}")

    if tag in ("p", "sp", "np"):
        if value not in _POLICY:
            raise bad("none, quarantine or reject")
        return str(value)
    if tag in ("aspf", "adkim"):
        if value not in ("r", "s"):
            raise bad("r (relaxed) or s (strict)")
        return str(value)
    if tag == "fo":
        options = str(value).split(":")
        if not all(option in ("0", "1", "d", "s") for option in options) or len(set(options)) != len(options):
            raise bad("0, 1, d, s or a colon-separated combination")
        return str(value)
    if tag == "pct":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise bad("an integer from 0 to 100")
        return str(value)
    if tag == "rf":
        if value != "afrf":
            raise bad("afrf")
        return "afrf"
    if tag == "ri":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad("a positive number of seconds")
        return str(value)
    return ",".join(_report_uris(domain, f"DMARC {tag}", value))


def dmarc_value(domain: str, settings: Mapping | None) -> str:
    return "; ".join(["v=DMARC1", *(f"{tag}={value}" for tag, value in dmarc_tags(domain, settings).items())])


def tlsrpt_value(domain: str, rua: object) -> str:
    """SMTP TLS reporting policy (RFC 8460): mailto: or https: report destinations."""
    if isinstance(rua, str):
        rua = [rua]
    uris = []
    for entry in rua or []:
        if isinstance(entry, str) and entry.startswith("https://"):
            uris.append(entry)
        else:
            uris.extend(_report_uris(domain, "tlsrpt_rua", [entry]))
    return f"v=TLSRPTv1; rua={','.join(uris)}"


def relayhost_spf_problems(domains: Iterable[Mapping], include_terms: Iterable[str], relayhost: object,
                           own_hosts: Iterable[str] = ()) -> list[str]:
    """Why the SPF record of each domain would fail the mail a smarthost relays (one message per domain).

    relayhost: mail_relayhost or its host name; only whether it is set ({}, "" or None: not) and its host
    matter (nothing else of it is ever quoted, so never its password). A record is refused
    when it ends in -all and authorises nothing but the site itself: a, mx, or a:/mx: naming the domain or one
    of own_hosts (the MX host names). Any other authorising term (include:, ip4:, ip6:, exists:, ptr, a:/mx: of
    another name, redirect=) is taken to cover the smarthost; ~all and ?all records are not refused.
    """
    if not relayhost:
        return []
    host = relayhost.get("host") if isinstance(relayhost, Mapping) else relayhost
    if not isinstance(host, str) or not host:
        host = "(its host not given)"
    own = {str(name).rstrip(".").lower() for name in own_hosts}
    include_terms = list(include_terms)
    problems = []
    for domain in domains:
        name = domain["name"]
        own_policy = domain.get("spf")
        policy = spf_value(own_policy, include_terms)
        terms = policy.lower().split()[1:]
        if "-all" not in terms:
            continue
        authorising = []
        for part in terms:
            term = _SPF_TERM.match(part)
            if term is None:  # a modifier: redirect= hands the decision on, exp= authorises nothing
                if part.startswith("redirect="):
                    authorising.append(part)
                continue
            if term["qualifier"] not in ("", "+") or term["mechanism"] == "all":
                continue
            arg = (term["arg"] or "").split("/")[0].lstrip(":").rstrip(".")
            if term["mechanism"] in ("a", "mx") and arg in ("", name.lower(), *own):
                continue
            authorising.append(part)
        if authorising:
            continue
        provider = ("what the relay provider documents for SPF (its include, as include:spf.relay.example, or its "
                    "addresses, as ip4:192.0.2.0/24)")
        if own_policy:
            fix = (f"Add to the spf of {name} {provider}; mail_spf_include applies only to the domains without "
                   "their own spf.")
        else:
            fix = f"Set mail_spf_include to {provider}, or give {name} its own spf that authorises the smarthost."
        problems.append(f"{name}: mail leaves through the smarthost {host} (mail_relayhost), but the SPF record "
                        f"{policy!r} ends in -all and authorises only the site's own hosts, so receivers would fail "
                        f"the relayed mail's SPF check. {fix}")
    return problems


def domain_policy_errors(domain: Mapping, include_terms: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(field, problem) for each DNS policy of a mail_domains entry that cannot be published; include_terms:
    spf_include_terms(mail_spf_include), which the default policy names."""
    name = domain["name"]
    checks = (("spf", lambda: spf_value(domain.get("spf"), include_terms)),
              ("dmarc", lambda: dmarc_value(name, domain.get("dmarc"))),
              ("tlsrpt_rua", lambda: tlsrpt_value(name, domain.get("tlsrpt_rua"))))
    errors = [("mta_sts", problem) for problem in
              (_mta_sts.settings_errors(domain["mta_sts"]) if domain.get("mta_sts") is not None else [])]
    for field, check in checks:
        try:
            check()
        except DnsRecordError as exc:
            errors.append((field, str(exc).removeprefix(f"{name}: ")))
    return errors


def srv_records(name: str, mx_hosts: Iterable[Mapping], ports: Mapping[str, int | None], ttl: int = 3600) -> list[dict]:
    """The RFC 6186 SRV records of a domain: each service on every MX host (the host's MX priority), or the
    target "." (RFC 2782: the service is not offered) where its port is 0 or None."""
    hosts = sorted(mx_hosts, key=lambda h: (h["priority"], h["hostname"]))
    records = []
    for label, service in CLIENT_SERVICES:
        port = ports.get(service)
        if port and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise DnsRecordError(f"{name}: {service} port {port!r} is not a port number from 1 to 65535")
        values = [f"{host['priority']} 1 {port} {fqdn(host['hostname'])}" for host in hosts] if port else ["0 0 0 ."]
        records.append({"name": fqdn(f"{label}.{name}"), "type": "SRV", "ttl": ttl, "values": values})
    return records


def tlsrpt_addresses(domain: Mapping) -> list:
    """Where TLS reports go: tlsrpt_rua, postmaster@<domain> when unset; [] (or null) turns the record off."""
    return (domain["tlsrpt_rua"] or []) if "tlsrpt_rua" in domain else [f"mailto:postmaster@{domain['name']}"]


def domain_records(domain: Mapping, mx_hosts: Iterable[Mapping], dkim_keys: Iterable[Mapping],
                   ttl: int = 3600, policy_mx: Iterable[str] | None = None,
                   client_ports: Mapping[str, int | None] | None = None,
                   caa_issuers: Iterable[str] = (), spf_include: Iterable[str] = ()) -> list[dict]:
    """Every record of one mail domain: MX, SPF, DKIM, DMARC, TLSRPT (unless turned off), MTA-STS (if it has an
    `mta_sts` entry: the `_mta-sts` id, the policy host's addresses and, with caa_issuers, its CAA records) and
    the mail clients' SRV records.

    mx_hosts: [{hostname, priority, addresses}], the hosts that receive mail for every domain; each serves
    the MTA-STS policy too, so `mta-sts.<domain>` has all their addresses.
    dkim_keys: [{selector, key_type, public_key}], the keys to publish for this domain.
    policy_mx: the MX names the MTA-STS policy lists (the mta_sts role's); None: the mx_hosts' names.
    client_ports: {submissions, submission, imaps, imap: port, 0 or None when off}; None: DEFAULT_CLIENT_PORTS.
    caa_issuers: the CAs that may issue the policy host's certificate (caa_records); never published at D.
    spf_include: terms of spf_include_terms, which a domain without its own spf authorises beside its MX hosts.
    """
    name = domain["name"]
    mx_hosts = list(mx_hosts)
    records = [{"name": fqdn(name), "type": "MX", "ttl": ttl,
                "values": [f"{host['priority']} {fqdn(host['hostname'])}" for host in
                           sorted(mx_hosts, key=lambda h: (h["priority"], h["hostname"]))]}]
    if not records[0]["values"]:
        raise DnsRecordError(f"{name}: no MX host")
    records.append(txt_record(name, spf_value(domain.get("spf"), spf_include), ttl))
    records.extend(dkim_records(name, dkim_keys, ttl))
    records.append(txt_record(f"_dmarc.{name}", dmarc_value(name, domain.get("dmarc")), ttl))
    if tlsrpt_addresses(domain):
        records.append(txt_record(f"_smtp._tls.{name}", tlsrpt_value(name, tlsrpt_addresses(domain)), ttl))
    if domain.get("mta_sts") is not None:
        try:
            policy = _mta_sts.policy_text(domain["mta_sts"],
                                          _mta_sts.policy_mx(policy_mx, [host["hostname"] for host in mx_hosts]))
        except _mta_sts.MtaStsError as exc:
            raise DnsRecordError(f"{name}: MTA-STS {exc}") from exc
        records.append(txt_record(f"_mta-sts.{name}", _mta_sts.txt_value(policy), ttl))
        addresses = [address for host in mx_hosts for address in host.get("addresses", [])]
        if not addresses:
            raise DnsRecordError(f"{name}: no address for {_mta_sts.policy_host(name)} (the MX hosts serve it)")
        records.extend(address_records(_mta_sts.policy_host(name), addresses, ttl))
        records.extend(caa_records(_mta_sts.policy_host(name), caa_issuers, ttl))
    return records + srv_records(name, mx_hosts, DEFAULT_CLIENT_PORTS if client_ports is None else client_ports, ttl)


def dkim_records(name: str, dkim_keys: Iterable[Mapping], ttl: int = 3600) -> list[dict]:
    """The DKIM key records of a domain, one per selector, in selector order."""
    dkim_values: dict[str, str] = {}
    for key in dkim_keys:
        selector = check_selector(key["selector"])
        value = dkim_txt_value(key["key_type"], key["public_key"])
        # Each MX host keeps its own keys: the same selector with two keys cannot be published.
        if dkim_values.setdefault(selector, value) != value:
            raise DnsRecordError(f"{name}: DKIM selector {selector} is used by two different keys (two hosts "
                                 "with the same selector tag?)")
    return [txt_record(f"{selector}._domainkey.{name}", value, ttl) for selector, value in sorted(dkim_values.items())]


def address_records(name: str, addresses: Iterable[str], ttl: int = 3600) -> list[dict]:
    """A and AAAA records of a name, one per distinct address."""
    records = []
    for address in sorted(set(addresses)):
        try:
            ip = ipaddress.ip_address(address)
        except ValueError as exc:
            raise DnsRecordError(f"{name}: {address!r} is not an IP address") from exc
        records.append({"name": fqdn(name), "type": "A" if ip.version == 4 else "AAAA", "ttl": ttl,
                        "values": [str(ip)]})
    return records


def host_records(hostname: str, addresses: Iterable[str], ttl: int = 3600, certificates: Iterable[str] = (),
                 caa_issuers: Iterable[str] = ()) -> list[dict]:
    """The address records of an MX host and the PTR each of its addresses must have (FCrDNS), then its TLSA
    records (one per key of certificates, tlsa_records) and its CAA records (caa_records)."""
    if not is_hostname(hostname):
        raise DnsRecordError(f"{hostname!r} is not a host name")
    records = []
    for record in address_records(hostname, addresses, ttl):
        ip = ipaddress.ip_address(record["values"][0])
        records += [record, {"name": ip.reverse_pointer + ".", "type": "PTR", "ttl": ttl, "values": [fqdn(hostname)]}]
    return records + tlsa_records(hostname, certificates, ttl) + caa_records(hostname, caa_issuers, ttl)


def tlsa_value(certificate: str) -> str:
    """The TLSA record of a certificate for DANE SMTP (RFC 7672 3.1.1; RFC 7671 5.1): `3 1 1` (DANE-EE, the
    SubjectPublicKeyInfo, SHA-256) and the hex SHA-256 of the DER SubjectPublicKeyInfo of the first certificate
    of a PEM text (a chain, leaf first). It names the key, so it stays the same when a renewal keeps the key."""
    # Imported here: dkim_keys runs the rest of this file on mail hosts that may lack cryptography.
    try:
        from cryptography import x509  # pylint: disable=import-outside-toplevel
        from cryptography.exceptions import UnsupportedAlgorithm  # pylint: disable=import-outside-toplevel
        from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise DnsRecordError("TLSA records need the Python package cryptography where they are computed") from exc
    if not isinstance(certificate, str):
        raise DnsRecordError(f"is a {type(certificate).__name__}, not PEM text")
    try:
        # The first CERTIFICATE block; others (the chain, a key in the same file) are skipped.
        public_key = x509.load_pem_x509_certificate(certificate.encode("utf-8", "surrogateescape")).public_key()
    except ValueError:
        raise DnsRecordError("is not a PEM certificate (no -----BEGIN CERTIFICATE----- block that parses)") from None
    except UnsupportedAlgorithm:
        raise DnsRecordError("has a public key of an algorithm cryptography does not know") from None
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


def tlsa_records(hostname: str, certificates: Iterable[str], ttl: int = 3600) -> list[dict]:
    """The TLSA records at _25._tcp.<hostname>: one per distinct key of certificates (the current certificate
    and, during a change, the next one), sorted; [] without certificates."""
    if isinstance(certificates, (str, bytes)) or not isinstance(certificates, Iterable):
        raise DnsRecordError(f"{hostname}: certificates must be a list of PEM texts")
    values = set()
    for index, certificate in enumerate(certificates):
        try:
            values.add(tlsa_value(certificate))
        except DnsRecordError as exc:
            raise DnsRecordError(f"{hostname}: certificates[{index}] {exc}") from None
    if not values:
        return []
    return [{"name": fqdn(TLSA_PREFIX + hostname), "type": "TLSA", "ttl": ttl, "values": sorted(values)}]


def check_caa_issuers(issuers: object) -> list[str]:
    """The issuer domain names of CAA `issue` records (RFC 8659 4.2: the CA's domain, as it documents it, e.g.
    letsencrypt.org), sorted, each once; None is none."""
    if issuers is None:
        return []
    if isinstance(issuers, (str, bytes)) or not isinstance(issuers, Iterable):
        raise DnsRecordError(f"CAA issuers {issuers!r} must be a list of CA domain names")
    issuers = list(issuers)
    for issuer in issuers:
        problem = name_problem(issuer)
        if problem:
            raise DnsRecordError(f"CAA issuer {issuer!r} is not a CA's domain name: {problem}")
    return sorted(set(issuers))


def caa_records(name: str, issuers: Iterable[str], ttl: int = 3600) -> list[dict]:
    """The CAA record set (RFC 8659) that lets only issuers issue certificates for name: `0 issue "<ca>"` each,
    which also covers wildcards (4.3); [] without issuers (any CA may, unless a parent name says otherwise)."""
    values = [f'0 issue "{issuer}"' for issuer in check_caa_issuers(issuers)]
    return [{"name": fqdn(name), "type": "CAA", "ttl": ttl, "values": values}] if values else []


def zone_fragment(records: Iterable[Mapping]) -> str:
    """BIND master-file lines with absolute names, includable in any zone ($INCLUDE or pasted); the data as
    dnspython writes it (quoting and escapes of TXT strings)."""
    # Imported here: the modules that run on mail hosts use the rest of this file without dnspython.
    import dns.rdata  # pylint: disable=import-outside-toplevel
    import dns.rdtypes.ANY.TXT  # pylint: disable=import-outside-toplevel

    lines = []
    for record in records:
        for value in record["values"]:
            if record["type"] == "TXT":
                rdata = dns.rdtypes.ANY.TXT.TXT("IN", "TXT", [s.encode() for s in value])
            else:
                rdata = dns.rdata.from_text("IN", record["type"], value)
            lines.append(f"{record['name']}\t{record['ttl']}\tIN\t{record['type']}\t{rdata.to_text()}")
    return "\n".join(lines) + "\n"


def site_records(domains: Iterable[Mapping], mx_hosts: Iterable[Mapping], dkim_rings: Iterable[Mapping],
                 ttl: int = 3600, policy_mx: Iterable[str] | None = None,
                 client_ports: Mapping[str, int | None] | None = None, caa_issuers: Iterable[str] = (),
                 removed_rings: Iterable[Mapping] = (), spf_include: object = None) -> dict:
    """{"domains": {name: records}, "hosts": records, "withdrawn": {name: records}}: every domain's records, the
    MX hosts' address, PTR, TLSA and CAA records, and of each withdrawn domain the records it keeps: its
    published DKIM keys, nothing else.

    removed_rings: as dkim_rings, the rings of domains removed from the site (dkim_keys' `removed`): each such
    domain is withdrawn while a host holds its ring, its keys published until rotation retires them.

    mx_hosts: [{hostname, priority, addresses, certificates}]; certificates (optional): PEM texts whose keys get
    TLSA records (tlsa_records).
    dkim_rings: the `domains` result of opendove.mailserver.dkim_keys of each host, {domain: {publish: [{selector,
    key_type, public_key}]}}; keys not made yet (no public key, as check mode predicts them) are left out.
    caa_issuers: the CAs that may issue the mail certificates: CAA records at each MX host name and at
    mta-sts.<domain> of the domains with MTA-STS, the names those certificates cover; never at a mail domain
    itself, where they would also bind the domain's other certificates (a web server's).
    spf_include: mail_spf_include (spf_include_terms), what the default SPF policy authorises beside the MX hosts.
    """
    try:
        spf_terms = spf_include_terms(spf_include)
    except DnsRecordError as exc:
        raise DnsRecordError(f"mail_spf_include: {exc}") from None
    mx_hosts = list(mx_hosts)
    dkim_rings = list(dkim_rings)
    removed_rings = list(removed_rings)
    domains = list(domains)
    caa_issuers = check_caa_issuers(caa_issuers)
    apexes = {fqdn(domain["name"]).lower() for domain in domains}
    result: dict = {"domains": {}, "hosts": [], "withdrawn": {}}

    def published(name: str, rings: list[Mapping]) -> list[Mapping]:
        return [key for ring in rings for key in ring.get(name, {}).get("publish", [])
                if key.get("public_key") is not None]

    for domain in domains:
        result["domains"][domain["name"]] = domain_records(domain, mx_hosts, published(domain["name"], dkim_rings), ttl,
                                                           policy_mx, client_ports, caa_issuers, spf_terms)
    for name in sorted({name for ring in removed_rings for name in ring}):
        if fqdn(name).lower() in apexes:
            raise DnsRecordError(f"{name} is a domain of the site, but a host has its key ring as removed")
        result["withdrawn"][name] = dkim_records(name, published(name, removed_rings), ttl)
    for host in mx_hosts:
        apex = fqdn(host["hostname"]).lower() in apexes
        result["hosts"] += host_records(host["hostname"], host["addresses"], ttl, host.get("certificates") or [],
                                        [] if apex else caa_issuers)
    return result
