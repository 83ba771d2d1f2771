# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host names and mail addresses as the site model accepts them (lower case, RFC 1123 / RFC 5322 dot-atom),
and why a name or an address is not one, with the form to write instead where there is one."""

from __future__ import annotations

import re

try:
    # IDNA 2008 (RFC 5891) with the UTS 46 mapping, as current mail clients and resolvers convert names.
    import idna
except ImportError:
    # Without it, the standard library's codec: IDNA 2003, which differs for a few characters (ß, ς, joiners).
    idna = None

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Names that are not host names may have underscores (RFC 2181 11), as SPF's include:_spf.example.net does.
_LABEL_WITH_UNDERSCORES = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
# RFC 5322 dot-atom local part: what a mailbox name in a virtual table can safely be.
_LOCAL_PART = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def a_label_form(name: str) -> str | None:
    """The ASCII (A-label, xn--) form of an internationalised domain name; None if it is not a valid one."""
    try:
        encoded = idna.encode(name, uts46=True) if idna else name.encode("idna")
    except (UnicodeError, ValueError):  # idna.IDNAError is a UnicodeError
        return None
    return encoded.decode("ascii")


def _is_a_label(label: str) -> bool:
    """True for an xn-- label that decodes (IDNA 2008 or 2003: older names, e.g. with symbols, stay valid)."""
    decoders = ([idna.decode] if idna else []) + [lambda text: text.encode("ascii").decode("idna")]
    for decode in decoders:
        try:
            decode(label)
        except (UnicodeError, ValueError):
            continue
        return True
    return False


def _syntax_issue(name: str, underscores: bool) -> str | None:
    """Why an ASCII name without a trailing dot is not a fully qualified DNS name, as a predicate."""
    if len(name) > 253:
        return "is longer than 253 characters"
    labels = name.split(".")
    label_form, characters = ((_LABEL_WITH_UNDERSCORES, "letters a-z, digits, underscores and inner hyphens")
                              if underscores else (_LABEL, "letters a-z, digits and inner hyphens"))
    for label in labels:
        if not label:
            return "has an empty label (a leading dot or two dots in a row)"
        if not label_form.match(label):
            return f"has a label {label!r} that is not 1 to 63 {characters}"
        if label.startswith("xn--") and not _is_a_label(label):
            return f"has a label {label!r} that is not a valid A-label (xn--, IDNA)"
    if len(labels) < 2:
        return "is a single label, not a fully qualified name (like mx1.example.org)"
    if labels[-1].isdigit():
        return "ends with a numeric label (an IP address?): give a name"
    return None


def _name_issue(name: object, underscores: bool = False) -> tuple[str, str | None] | None:
    """(why name is not a lower-case fully qualified name, as a predicate; the form to write, if one is
    acceptable), or None when it is one."""
    if name is None:
        return "is missing", None
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string", None
    if not name:
        return "is empty", None
    if _CONTROL.search(name):
        return "contains a control character", None
    for mark, part in (("://", "a scheme"), ("/", "a path"), (":", "a port"), ("@", "an @ (a mail address?)")):
        if mark in name:
            return f"has {part}: give the name only", None
    reasons = []
    fixed = name[:-1] if name.endswith(".") else name
    if not name.isascii():
        fixed = a_label_form(fixed)
        if fixed is None:
            return ("contains a non-ASCII character and is not a valid internationalised domain name (IDNA 2008)",
                    None)
        reasons.append("is in Unicode (a U-label), not in its ASCII (A-label) form")
    elif name != name.lower():
        reasons.append("has upper-case letters")
        fixed = fixed.lower()
    if name.endswith("."):
        reasons.append("ends with a dot")
    problem = _syntax_issue(fixed, underscores)
    if problem:
        return problem, None
    return (" and ".join(reasons), fixed) if reasons else None


def name_problem(name: object, underscores: bool = False) -> str | None:
    """Why name is not a lower-case fully qualified domain name of two labels or more (the form the site model
    takes: ASCII, A-labels for internationalised names, no trailing dot), with the form to write where there
    is one; None when it is one. The name is quoted with repr, so control characters show escaped.
    underscores: its labels may also have underscores (a name a record points at, not a host name)."""
    issue = _name_issue(name, underscores)
    if issue is None:
        return None
    reason, fixed = issue
    return f"it {reason}" + (f": write {fixed!r}" if fixed else "")


def is_hostname(name: object) -> bool:
    """True for a lower-case fully qualified DNS name of at least two labels."""
    return _name_issue(name) is None


def address_problem(address: object) -> str | None:
    """Why address is not a lower-case mail address local-part@domain (an RFC 5322 dot-atom, ASCII: no
    SMTPUTF8), with the form to write where there is one; None when it is one."""
    if address is None:
        return "it is missing"
    if not isinstance(address, str):
        return f"it is a {type(address).__name__}, not a string"
    if _CONTROL.search(address):
        return "it contains a control character"
    if address.count("@") != 1:
        return "it is not local-part@domain (with exactly one @)"
    if len(address) > 254:
        return "it is longer than 254 characters"
    local, domain = address.split("@")
    if not local.isascii():
        return ("its local part contains a non-ASCII character: internationalised (SMTPUTF8) addresses are not "
                "supported")
    if len(local) > 64 or not _LOCAL_PART.match(local.lower()):
        return ("its local part is not a dot-atom of at most 64 characters (a-z, digits, "
                "!#$%&'*+/=?^_`{|}~- and single inner dots)")
    reasons = ["its local part has upper-case letters"] if local != local.lower() else []
    issue = _name_issue(domain)
    if issue is not None:
        if issue[1] is None:
            return f"its domain {issue[0]}"
        reasons.append(f"its domain {issue[0]}")
        domain = issue[1]
    return f"{' and '.join(reasons)}: write {local.lower() + '@' + domain!r}" if reasons else None


def split_address(address: object) -> tuple[str, str] | None:
    """(local part, domain) of a valid lower-case address, else None."""
    if address_problem(address) is not None:
        return None
    local, domain = address.split("@")
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
