# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Password hashes as OpenSMTPD and Dovecot check them (crypt(3), libxcrypt): the scheme, its cost, and
whether the server can carry that cost.

OpenSMTPD checks SMTP AUTH passwords in its one lookup process, the process that also answers every
recipient and sender lookup of every session: while it computes a hash, all mail waits, and anyone can make
it compute one by trying a login. So a hash may cost no more than a limit (DEFAULT_MAX_COST, site variable
mail_password_hash_max_cost). Plain Python; never quotes a hash (a "hash" may be a clear password put in by
mistake).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_B64 = "[./0-9A-Za-z]"
_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Crypt strings both OpenSMTPD (crypt(3), libxcrypt) and Dovecot (scheme CRYPT) accept, and that are strong.
# The cost fields are read by hash_cost, which says what is wrong with them.
_STRONG_HASHES = {
    "SHA512-crypt": re.compile(rf"^\$6\$(rounds=[^$]*\$)?{_B64}{{1,16}}\${_B64}{{86}}$"),
    "yescrypt": re.compile(rf"^\$y\${_B64}+\${_B64}+\${_B64}{{43}}$"),
    "bcrypt": re.compile(rf"^\$2[by]\$[0-9]{{2}}\${_B64}{{53}}$"),
}
_WEAK_CRYPT_PREFIXES = {"$1$": "MD5-crypt", "$5$": "SHA256-crypt", "$2a$": "bcrypt $2a$ (buggy variant)"}

# libxcrypt's SHA512-crypt: rounds= absent means 5000; outside 1000..999999999, or with a leading zero, it
# refuses the setting (glibc's own crypt clamped instead).
SHA512_DEFAULT_ROUNDS = 5000
SHA512_ROUNDS = (1000, 999_999_999)
BCRYPT_COSTS = (4, 31)
# yescrypt flavor YESCRYPT_DEFAULTS (RW, 6 rounds, gather 4, simple 2, 12 KiB S-box): the only one
# libxcrypt's crypt_gensalt writes ('j'), and the only read-write one its yescrypt_kdf computes.
_YESCRYPT_RW = 0x002
_YESCRYPT_RW_FLAVOR_MASK = 0x3FC
_YESCRYPT_DEFAULT_FLAVOR = _YESCRYPT_RW + (0x0B6 >> 2)
YESCRYPT_COUNTS = (1, 11)

# Measured on one core (libxcrypt crypt(), one check): SHA512-crypt 20000 rounds 5 ms (5000: 1.25 ms;
# passlib's default 656000: 163 ms); bcrypt cost 7 6.6 ms (10: 50 ms); yescrypt count 3 5.1 ms (mkpasswd's
# default 5: 21 ms).
DEFAULT_MAX_COST = {"sha512_crypt_rounds": 20000, "bcrypt_cost": 7, "yescrypt_cost": 3}
_MAX_COST_RANGES = {"sha512_crypt_rounds": SHA512_ROUNDS, "bcrypt_cost": BCRYPT_COSTS,
                    "yescrypt_cost": YESCRYPT_COUNTS}
_MAX_COST_VAR = "mail_password_hash_max_cost"
_WHY_AND_HOW = ("OpenSMTPD checks every SMTP AUTH password in its single lookup process, which also answers "
                "every recipient and sender lookup of every session, so failed logins from strangers against "
                "costly hashes stall all mail. Make a hash within the limit: `mkpasswd -m yescrypt -R 3`, "
                "`mkpasswd -m sha-512 -R 5000`, or in Python (libpass, the maintained passlib, module passlib) "
                "`passlib.hash.sha512_crypt.using(rounds=5000).hash(password)`")


class PasswordHashError(ValueError):
    """A crypt string whose cost field crypt(3) would not take; the message says why, without the hash."""


def hash_scheme(value: object) -> str | None:
    """Name of the strong crypt scheme of value, or None if it is not one."""
    if not isinstance(value, str):
        return None
    for scheme, pattern in _STRONG_HASHES.items():
        if pattern.match(value):
            return scheme
    return None


def _decode64_uint32(field: str, pos: int, minimum: int) -> tuple[int, int]:
    """libxcrypt's decode64_uint32: a variable-length number (the first character's range says how many
    characters follow) plus minimum; (value, position after it)."""

    def digit(at: int) -> int:
        if at >= len(field) or field[at] not in _ITOA64:
            raise PasswordHashError("its parameters do not decode")
        return _ITOA64.index(field[at])

    start, end, chars, bits = 0, 47, 1, 0
    c = digit(pos)
    pos += 1
    value = minimum
    while c > end:
        value += (end + 1 - start) << bits
        start = end + 1
        end = start + (62 - end) // 2
        chars += 1
        bits += 6
    value += (c - start) << bits
    for at in range(pos, pos + chars - 1):
        bits -= 6
        value += digit(at) << bits
    return value, pos + chars - 1


def decode_yescrypt_params(field: str) -> dict[str, int]:
    """The parameters of a $y$ setting's first field (e.g. j9T), read as libxcrypt's yescrypt_r reads them:
    flavor, N (from log2 N), r, then, if more follows, a bit set of which of p, t, g, NROM (log2) follow.
    Defaults p 1, t 0, g 0, NROM 0. Raises PasswordHashError where libxcrypt refuses the setting."""
    flavor, pos = _decode64_uint32(field, 0, 0)
    if flavor > _YESCRYPT_RW + (_YESCRYPT_RW_FLAVOR_MASK >> 2):
        raise PasswordHashError(f"its flavor {flavor} is unknown")
    n_log2, pos = _decode64_uint32(field, pos, 1)
    if n_log2 > 63:
        raise PasswordHashError(f"its log2 N {n_log2} is above 63")
    params = {"flavor": flavor, "N": 1 << n_log2, "r": 0, "p": 1, "t": 0, "g": 0, "NROM": 0}
    params["r"], pos = _decode64_uint32(field, pos, 1)
    if pos < len(field):
        have, pos = _decode64_uint32(field, pos, 1)
        for bit, name, minimum in ((1, "p", 2), (2, "t", 1), (4, "g", 1), (8, "NROM", 1)):
            if have & bit:
                params[name], pos = _decode64_uint32(field, pos, minimum)
        if have & 8:
            if params["NROM"] > 63:
                raise PasswordHashError(f"its log2 NROM {params['NROM']} is above 63")
            params["NROM"] = 1 << params["NROM"]
    if pos != len(field):
        raise PasswordHashError("its parameters have trailing characters")
    return params


def yescrypt_gensalt_params(count: int) -> tuple[int, int]:
    """(N, r) that libxcrypt's crypt_gensalt (and mkpasswd -R) writes for a yescrypt cost count 1..11:
    r 8 (1 KiB blocks) below 3, else r 32; N*r doubles with each count (2**(count + 12))."""
    if count < 3:
        return 1 << (count + 9), 8
    return 1 << (count + 7), 32


def hash_cost(value: object) -> tuple[str, dict[str, int]]:
    """(scheme, cost parameters) of a strong crypt string: SHA512-crypt {rounds}, bcrypt {cost} (log2 of
    the rounds), yescrypt {flavor, N, r, p, t, g, NROM}. Raises PasswordHashError for a string that is not
    one, or whose cost field crypt(3) would refuse (then no password ever matches)."""
    scheme = hash_scheme(value)
    if scheme is None:
        raise PasswordHashError("is not a well-formed SHA512-crypt ($6$), yescrypt ($y$) or bcrypt ($2b$/$2y$) "
                                "hash")
    field = value.split("$")[2]
    try:
        if scheme == "SHA512-crypt":
            if not field.startswith("rounds="):
                return scheme, {"rounds": SHA512_DEFAULT_ROUNDS}
            rounds = field[len("rounds="):]
            if not re.fullmatch(r"[1-9][0-9]*", rounds) or not SHA512_ROUNDS[0] <= int(rounds) <= SHA512_ROUNDS[1]:
                raise PasswordHashError(f"its rounds= is not a number from {SHA512_ROUNDS[0]} to {SHA512_ROUNDS[1]} "
                                        "without leading zeros")
            return scheme, {"rounds": int(rounds)}
        if scheme == "bcrypt":
            if not BCRYPT_COSTS[0] <= int(field) <= BCRYPT_COSTS[1]:
                raise PasswordHashError(f"its cost {field} is not from {BCRYPT_COSTS[0]:02d} to {BCRYPT_COSTS[1]}")
            return scheme, {"cost": int(field)}
        return scheme, decode_yescrypt_params(field)
    except PasswordHashError as exc:
        raise PasswordHashError(f"is not a well-formed {scheme} hash: {exc} (crypt(3) would refuse every "
                                "password)") from exc


def _whole(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def max_cost_errors(max_cost: object) -> list[str]:
    """Problems of mail_password_hash_max_cost ({} or None: the defaults)."""
    if not max_cost:
        return []
    if not isinstance(max_cost, Mapping):
        return [f"must be a mapping {{{', '.join(DEFAULT_MAX_COST)}}} (or {{}} for the defaults)"]
    errors = []
    unknown = sorted(set(map(str, max_cost)) - set(DEFAULT_MAX_COST))
    if unknown:
        errors.append(f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(DEFAULT_MAX_COST))})")
    for key, (low, high) in _MAX_COST_RANGES.items():
        if key in max_cost:
            value = _whole(max_cost[key])
            if value is None or not low <= value <= high:
                errors.append(f"{key} {max_cost[key]!r} is not a whole number from {low} to {high}")
    return errors


def max_cost_limits(max_cost: object) -> dict[str, int]:
    """The limits in force: each valid entry of mail_password_hash_max_cost, the default for the others."""
    limits = dict(DEFAULT_MAX_COST)
    if isinstance(max_cost, Mapping):
        for key, (low, high) in _MAX_COST_RANGES.items():
            value = _whole(max_cost.get(key))
            if value is not None and low <= value <= high:
                limits[key] = value
    return limits


def _yescrypt_count(product: int) -> str:
    """' (count c)' when N*r is what crypt_gensalt writes for a cost count c, else ''."""
    for count in range(YESCRYPT_COUNTS[0], YESCRYPT_COUNTS[1] + 1):
        n, r = yescrypt_gensalt_params(count)
        if n * r == product:
            return f", count {count}"
    return ""


def _cost_excess(scheme: str, params: dict[str, int], limits: dict[str, int]) -> str | None:
    """What of the hash's cost is above the limits, or None."""
    if scheme == "SHA512-crypt" and params["rounds"] > limits["sha512_crypt_rounds"]:
        return (f"is a SHA512-crypt hash of {params['rounds']} rounds, above the limit of "
                f"{limits['sha512_crypt_rounds']} ({_MAX_COST_VAR}.sha512_crypt_rounds)")
    if scheme == "bcrypt" and params["cost"] > limits["bcrypt_cost"]:
        return (f"is a bcrypt hash of cost {params['cost']}, above the limit of {limits['bcrypt_cost']} "
                f"({_MAX_COST_VAR}.bcrypt_cost)")
    if scheme != "yescrypt":
        return None
    extra = [name for name, default in (("p", 1), ("t", 0), ("g", 0), ("NROM", 0)) if params[name] != default]
    if params["flavor"] != _YESCRYPT_DEFAULT_FLAVOR:
        extra.insert(0, "flavor")
    if extra:
        return (f"is a yescrypt hash with settings crypt_gensalt never writes ({', '.join(extra)}), whose cost "
                "this check does not know")
    bound_n, bound_r = yescrypt_gensalt_params(limits["yescrypt_cost"])
    product = params["N"] * params["r"]
    if product <= bound_n * bound_r:
        return None
    return (f"is a yescrypt hash of N={params['N']} r={params['r']} (N*r {product}{_yescrypt_count(product)}), "
            f"above the limit of N*r {bound_n * bound_r} (count {limits['yescrypt_cost']}, "
            f"{_MAX_COST_VAR}.yescrypt_cost)")


def password_hash_problem(value: object, limits: Mapping[str, int] | None = None) -> str | None:
    """Why value is not a password hash the server can check, as a predicate; None when it is one. limits:
    max_cost_limits' result (None: the defaults). Never quotes the value: it may be a clear password."""
    if not isinstance(value, str) or not value:
        return "is missing or empty"
    if value.startswith("{"):
        return ("has a {SCHEME} prefix: give the bare crypt string (OpenSMTPD answers 535 to prefixed hashes; "
                "Dovecot's default scheme is CRYPT)")
    for prefix, name in _WEAK_CRYPT_PREFIXES.items():
        if value.startswith(prefix):
            return f"is a {name} hash: use SHA512-crypt ($6$), yescrypt ($y$) or bcrypt ($2b$/$2y$)"
    if not value.startswith("$"):
        return ("is not a crypt hash (clear text?): store only hashes (made once, e.g. with "
                "`mkpasswd -m yescrypt -R 3`), kept in a vault")
    try:
        scheme, params = hash_cost(value)
    except PasswordHashError as exc:
        return str(exc)
    excess = _cost_excess(scheme, params, dict(limits or DEFAULT_MAX_COST))
    return f"{excess}. {_WHY_AND_HOW}" if excess else None
