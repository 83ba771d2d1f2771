# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MTA-STS (RFC 8461): the policy a domain serves over HTTPS and the id its `_mta-sts` TXT record carries.

Pure computation, shared by the mta_sts role (the policy nginx serves) and dns_records.yml (the id): both
derive from the same policy text, so the id changes exactly when the text does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from ansible_collections.opendove.mailserver.plugins.module_utils._names import is_hostname

MODES = ("testing", "enforce", "none")
MAX_AGE_LIMIT = 31557600  # RFC 8461 3.2: about one year
DEFAULT_MAX_AGE = 604800  # one week; RFC 8461 3.2 suggests weeks or more once the policy is settled
POLICY_HOST_LABEL = "mta-sts"
ID_LENGTH = 20  # RFC 8461 3.1: 1 to 32 letters and digits


class MtaStsError(ValueError):
    """An MTA-STS setting cannot make a policy; the message says which and why."""


def settings_errors(settings: object) -> list[str]:
    """Problems of a domain's `mta_sts` entry ({mode, max_age}); [] when a policy can be made from it."""
    if not isinstance(settings, Mapping):
        return ["must be a mapping {mode: testing|enforce|none, max_age: seconds}"]
    errors = []
    unknown = sorted(set(settings) - {"mode", "max_age"})
    if unknown:
        errors.append(f"unknown keys {', '.join(map(str, unknown))} (known: mode, max_age)")
    if settings.get("mode") not in MODES:
        errors.append(f"mode {settings.get('mode')!r} is not one of {', '.join(MODES)}")
    max_age = settings.get("max_age", DEFAULT_MAX_AGE)
    if isinstance(max_age, bool) or not isinstance(max_age, int) or not 0 <= max_age <= MAX_AGE_LIMIT:
        errors.append(f"max_age {max_age!r} is not a whole number of seconds from 0 to {MAX_AGE_LIMIT}")
    return errors


def policy_host(domain: str) -> str:
    """The name the policy is served at: mta-sts.<domain>."""
    return f"{POLICY_HOST_LABEL}.{domain}"


def policy_mx(listed: Iterable[str] | None, mx_hostnames: Iterable[str]) -> list[str]:
    """The MX names the policies list: listed (the site's mta_sts_mx_hosts) when it names any, else the name of
    every MX host. The mta_sts role (the policy served) and the DNS records (its id) both take it from here."""
    return list(listed or ()) or list(mx_hostnames)


def policy_text(settings: Mapping, mx_hosts: Iterable[str]) -> str:
    """The policy file (RFC 8461 3.2): CRLF line endings, the MX host names sorted so the text is stable."""
    errors = settings_errors(settings)
    if errors:
        raise MtaStsError("; ".join(errors))
    names = sorted({name.rstrip(".") for name in mx_hosts})
    if not names:
        raise MtaStsError("no MX host for the policy")
    bad = [name for name in names if not is_hostname(name)]
    if bad:
        raise MtaStsError(f"MX names {', '.join(map(repr, bad))} are not host names")
    lines = ["version: STSv1", f"mode: {settings['mode']}", *(f"mx: {name}" for name in names),
             f"max_age: {settings.get('max_age', DEFAULT_MAX_AGE)}"]
    return "".join(f"{line}\r\n" for line in lines)


def policy_id(text: str) -> str:
    """The `_mta-sts` id: a digest of the policy text, so it changes exactly when the text changes."""
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:ID_LENGTH]


def txt_value(text: str) -> str:
    """The `_mta-sts.<domain>` TXT record (RFC 8461 3.1)."""
    return f"v=STSv1; id={policy_id(text)}"


def policies(domains: Iterable[Mapping], mx_hosts: Iterable[str]) -> list[dict]:
    """[{domain, host, text, id}] for every domain with an `mta_sts` entry, in the order given."""
    mx_hosts = list(mx_hosts)
    result = []
    for domain in domains:
        if domain.get("mta_sts") is None:
            continue
        text = policy_text(domain["mta_sts"], mx_hosts)
        result.append({"domain": domain["name"], "host": policy_host(domain["name"]), "text": text,
                       "id": policy_id(text)})
    return result
