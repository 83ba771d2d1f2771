# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host names and mail addresses as the site model accepts them (lower case, RFC 1123 / RFC 5322 dot-atom)."""

from __future__ import annotations

import re

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# RFC 5322 dot-atom local part: what a mailbox name in a virtual table can safely be.
_LOCAL_PART = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def is_hostname(name: object) -> bool:
    """True for a lower-case fully qualified DNS name of at least two labels."""
    if not isinstance(name, str) or len(name) > 253 or name != name.lower():
        return False
    labels = name.split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def split_address(address: object) -> tuple[str, str] | None:
    """(local part, domain) of a valid lower-case address, else None."""
    if not isinstance(address, str) or address.count("@") != 1 or len(address) > 254:
        return None
    local, domain = address.split("@")
    if len(local) > 64 or not _LOCAL_PART.match(local) or not is_hostname(domain):
        return None
    return local, domain


def names_not_covered(subject_alt_names: object, names: list[str]) -> list[str]:
    """The names a certificate with these subjectAltName entries (`DNS:name`, as community.crypto reports
    them) is not valid for; a wildcard covers exactly one left-most label (RFC 6125 6.4.3)."""
    dns_names = {entry[4:].lower().rstrip(".") for entry in subject_alt_names or []
                 if isinstance(entry, str) and entry.startswith("DNS:")}

    def covered(name: str) -> bool:
        parent = name.partition(".")[2]
        return name in dns_names or (bool(parent) and f"*.{parent}" in dns_names)

    return [name for name in names if not covered(name)]
