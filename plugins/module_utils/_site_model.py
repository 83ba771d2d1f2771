# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The site model shared by every role: validation and the tables derived from it.

Plain Python, no Ansible imports: the filters in plugins/filter/mail_site.py wrap these functions
and tests/unit exercises them directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import (
    DnsRecordError,
    domain_policy_errors,
    spf_include_terms,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._names import (
    address_problem,
    is_hostname,
    name_problem,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._password_hash import (
    max_cost_errors,
    max_cost_limits,
    password_hash_problem,
)

_HOSTNAME = "is not a lower-case fully qualified host name"
_DOMAIN = "is not a lower-case domain name"
_ADDRESS = "is not a lower-case mail address"


def _as_targets(value: object) -> list[object]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def validate_site(
    hostname: object,
    domains: object,
    accounts: object,
    aliases: object,
    tls_certificate: object,
    tls_private_key: object,
    relayhost: object = None,
    password_hash_max_cost: object = None,
    spf_include: object = None,
) -> list[str]:
    """Every problem of the site model, as messages naming the variable and the entry; [] when sound.

    password_hash_max_cost: mail_password_hash_max_cost, the costliest password hashes the server takes
    (None or {}: the defaults of _password_hash.DEFAULT_MAX_COST).
    spf_include: mail_spf_include, what the default SPF policy authorises beside the MX hosts (None: nothing).
    """
    errors: list[str] = [f"mail_relayhost: {problem}" for problem in relayhost_errors(relayhost)]
    try:
        spf_terms = spf_include_terms(spf_include)
    except DnsRecordError as exc:
        errors.append(f"mail_spf_include: {exc}")
        spf_terms = []
    errors += [f"mail_password_hash_max_cost: {problem}" for problem in max_cost_errors(password_hash_max_cost)]
    hash_limits = max_cost_limits(password_hash_max_cost)
    problem = name_problem(hostname)
    if problem:
        errors.append(f"mail_hostname: {hostname!r} {_HOSTNAME}: {problem}")
    for var, path in (("mail_tls_certificate", tls_certificate), ("mail_tls_private_key", tls_private_key)):
        if not isinstance(path, str) or not path.startswith("/"):
            errors.append(f"{var}: {path!r} is not an absolute path")

    domain_names: list[str] = []
    catchalls: list[tuple[int, str, object]] = []
    if not isinstance(domains, list) or not domains:
        errors.append("mail_domains: must be a non-empty list of domain entries")
        domains = []
    for index, entry in enumerate(domains):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        where = f"mail_domains[{index}]"
        problem = name_problem(name)
        if problem:
            errors.append(f"{where}: name {name!r} {_DOMAIN}: {problem}")
            continue
        if name in domain_names:
            errors.append(f"{where} ({name}): the domain is listed twice")
        domain_names.append(name)
        errors.extend(f"{where} ({name}).{field}: {problem}" for field, problem in
                      domain_policy_errors(entry, spf_terms))
        catchall = entry.get("catchall", False)
        if catchall is not False:
            catchalls.append((index, name, catchall))

    addresses: set[str] = set()
    if not isinstance(accounts, list):
        errors.append("mail_accounts: must be a list of {address, password_hash} entries")
        accounts = []
    for index, entry in enumerate(accounts):
        address = entry.get("address") if isinstance(entry, Mapping) else None
        where = f"mail_accounts[{index}]"
        problem = address_problem(address)
        if problem:
            errors.append(f"{where}: address {address!r} {_ADDRESS}: {problem}")
            continue
        where = f"{where} ({address})"
        domain = address.split("@")[1]
        if domain not in domain_names:
            errors.append(f"{where}: domain {domain} is not in mail_domains")
        if address in addresses:
            errors.append(f"{where}: the account is listed twice")
        addresses.add(address)
        problem = password_hash_problem(entry.get("password_hash"), hash_limits)
        if problem:
            errors.append(f"{where}: password_hash {problem}")

    if not isinstance(aliases, Mapping):
        errors.append("mail_aliases: must be a mapping of address to a list of target addresses")
        aliases = {}
    for alias, targets in aliases.items():
        where = f"mail_aliases[{alias!r}]"
        problem = address_problem(alias)
        if problem:
            errors.append(f"{where}: {alias!r} {_ADDRESS}: {problem}")
            continue
        domain = alias.split("@")[1]
        if domain not in domain_names:
            errors.append(f"{where}: domain {domain} is not in mail_domains")
        if alias in addresses:
            errors.append(f"{where}: the address is also an account; an address is either a mailbox or an alias")
        target_list = _as_targets(targets)
        if not target_list:
            errors.append(f"{where}: has no target")
        for target in target_list:
            errors.extend(_target_errors(where, target, domain_names, addresses, aliases))
    errors.extend(_alias_loop_errors(aliases))

    for index, name, catchall in catchalls:
        if not isinstance(catchall, str):
            errors.append(f"mail_domains[{index}] ({name}).catchall: must be false or the address that receives "
                          "mail for unknown users of the domain")
            continue
        errors.extend(_target_errors(f"mail_domains[{index}] ({name}).catchall", catchall, domain_names,
                                     addresses, aliases))
    return errors


RELAY_TLS_MODES = ("starttls", "smtps")
_RELAY_KEYS = {"host", "port", "username", "password", "tls", "ca_file"}


def relayhost_errors(relayhost: object) -> list[str]:
    """Problems of the smarthost setting ({} or None: no smarthost); never quotes the password."""
    if not relayhost:
        return []
    if not isinstance(relayhost, Mapping):
        return ["must be a mapping {host, port, username, password, tls, ca_file} (or {} for none)"]
    errors = []
    unknown = sorted(set(map(str, relayhost)) - _RELAY_KEYS)
    if unknown:
        errors.append(f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(_RELAY_KEYS))})")
    host = relayhost.get("host")
    if isinstance(host, str) and "://" in host:
        errors.append(f"host {host!r} has a scheme: give the host name only (TLS is set by tls, the port by port)")
    elif isinstance(host, str) and "/" in host:
        errors.append(f"host {host!r} has a path: give the host name only")
    elif isinstance(host, str) and ":" in host:
        errors.append(f"host {host!r} has a port: give the host name only and the port in port")
    elif not is_hostname(host):
        errors.append(f"host {host!r} {_HOSTNAME}")
    port = relayhost.get("port", 587)
    if isinstance(port, bool) or not str(port).isdigit() or not 1 <= int(port) <= 65535:
        errors.append(f"port {port!r} is not a port number from 1 to 65535")
    if relayhost.get("tls", "starttls") not in RELAY_TLS_MODES:
        errors.append(f"tls {relayhost.get('tls')!r} is not one of {', '.join(RELAY_TLS_MODES)} (TLS is never off)")
    ca_file = relayhost.get("ca_file")
    if ca_file is not None and not (isinstance(ca_file, str) and ca_file.startswith("/")):
        errors.append(f"ca_file {ca_file!r} is not an absolute path")
    username, password = relayhost.get("username"), relayhost.get("password")
    if (username is None) != (password is None):
        errors.append("username and password go together: give both, or neither for a smarthost without AUTH")
    elif username is not None:
        # The secrets table line is `label username:password`: one line, the first colon ends the user name.
        if not isinstance(username, str) or not re.fullmatch(r"[^\s:]+", username):
            errors.append("username must be a non-empty string without spaces or colons")
        if not isinstance(password, str) or not password or password != password.strip() or not password.isprintable():
            errors.append("password must be a non-empty string of printable characters, without leading or "
                          "trailing spaces")
    return errors


SUBMISSION_FACTORS = ("password", "client_certificate")


def submission_auth_errors(factors: object, client_ca: object) -> list[str]:
    """Problems of what submission clients must present (opensmtpd_submission_auth and _client_ca)."""
    if not isinstance(factors, list) or not factors:
        return ["opensmtpd_submission_auth: must be [password] or [password, client_certificate]"]
    errors = [f"opensmtpd_submission_auth: {factor!r} is not one of {', '.join(SUBMISSION_FACTORS)}"
              for factor in factors if factor not in SUBMISSION_FACTORS]
    if "password" not in factors:
        errors.append("opensmtpd_submission_auth: without password, anyone holding a client certificate could send "
                      "mail through this host as any of its users (OpenSMTPD does not tie a certificate to a login): "
                      "that could make an open relay, so a client certificate only ever comes in addition to the "
                      "password")
    if "client_certificate" in factors and not client_ca:
        errors.append("opensmtpd_submission_client_ca: client_certificate is asked for, but no CA is set to verify "
                      "it against")
    if client_ca and "client_certificate" not in factors:
        errors.append("opensmtpd_submission_client_ca: set, but opensmtpd_submission_auth does not ask for "
                      "client_certificate")
    if client_ca and not (isinstance(client_ca, str) and client_ca.startswith("/")):
        errors.append(f"opensmtpd_submission_client_ca: {client_ca!r} is not an absolute path")
    return errors


def _target_errors(where: str, target: object, domain_names: list[str], addresses: set[str],
                   aliases: Mapping) -> list[str]:
    problem = address_problem(target)
    if problem:
        return [f"{where}: target {target!r} {_ADDRESS}: {problem}"]
    if target.split("@")[1] in domain_names and target not in addresses and target not in aliases:
        return [f"{where}: target {target} is in a local domain but is neither an account nor an alias"]
    return []


def _alias_loop_errors(aliases: Mapping) -> list[str]:
    """One message per alias cycle, found by depth-first search over alias-to-alias edges."""
    edges = {alias: [t for t in _as_targets(targets) if t in aliases] for alias, targets in aliases.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    errors: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                errors.append(f"mail_aliases: alias loop {' -> '.join(cycle)}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for alias in edges:
        if alias not in state:
            visit(alias, [alias])
    return errors


def virtual_table(domains: Iterable[Mapping], accounts: Iterable[Mapping], aliases: Mapping,
                  vmail_user: str) -> list[tuple[str, str]]:
    """OpenSMTPD virtual table rows: mailbox -> the vmail system user, alias -> targets, @domain -> catch-all.

    A self-map (address -> same address) makes OpenSMTPD answer 524, so mailboxes map to the system user.
    """
    rows = [(entry["address"], vmail_user) for entry in accounts]
    rows += [(alias, ", ".join(_as_targets(targets))) for alias, targets in aliases.items()]
    rows += [(f"@{entry['name']}", entry["catchall"]) for entry in domains
             if entry.get("catchall", False) is not False]
    return sorted(rows)


def credential_table(accounts: Iterable[Mapping]) -> list[tuple[str, str]]:
    """OpenSMTPD credentials table rows: login -> crypt hash (the same hashes Dovecot checks)."""
    return sorted((entry["address"], entry["password_hash"]) for entry in accounts)


def sender_table(accounts: Iterable[Mapping], aliases: Mapping) -> list[tuple[str, list[str]]]:
    """OpenSMTPD senders table rows: login -> the addresses it may use as envelope sender.

    A user may send as their own address and as every alias that delivers to them, directly or through
    other aliases; catch-alls grant nothing.
    """
    rows = []
    for entry in accounts:
        login = entry["address"]
        allowed = {login} | {alias for alias in aliases if login in _expand(alias, aliases, set())}
        rows.append((login, sorted(allowed)))
    return sorted(rows)


def _expand(address: str, aliases: Mapping, seen: set[str]) -> set[str]:
    """Final recipients of an alias (loop-safe: a loop is a validation error, never a hang here)."""
    if address not in aliases:
        return {address}
    if address in seen:
        return set()
    result: set[str] = set()
    for target in _as_targets(aliases[address]):
        result |= _expand(target, aliases, seen | {address})
    return result


DKIM_SIGNERS = ("dkimproxy", "rspamd")


def default_dkim_signer(distribution: str, major_version: str) -> str:
    """The platform's DKIM signer: Rspamd where its OpenSMTPD filter passes the authenticated user (Debian 13
    and later), dkimproxy elsewhere (Debian 12; Alpine, which packages it)."""
    if distribution == "Debian" and str(major_version).isdigit() and int(major_version) >= 13:
        return "rspamd"
    return "dkimproxy"


def dkim_signer_errors(signer: object, distribution: str, major_version: str) -> list[str]:
    """Why `signer` cannot sign on this platform; empty when it can."""
    if signer not in DKIM_SIGNERS:
        return [f"mail_dkim_signer: {signer!r} is not one of {', '.join(DKIM_SIGNERS)}"]
    if signer == "rspamd" and distribution == "Debian" and str(major_version).isdigit() and int(major_version) < 13:
        return [f"mail_dkim_signer: rspamd cannot sign on Debian {major_version}: its opensmtpd-filter-rspamd does "
                "not pass the authenticated user to Rspamd, so submissions would leave unsigned; use dkimproxy"]
    return []
