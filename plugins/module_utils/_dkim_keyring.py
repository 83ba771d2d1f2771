# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DKIM keys and the key ring of a domain: which selectors exist, in which state, since when.

A ring is a plain dict (the JSON state file's content):
  {"version": 1, "domain": "example.test",
   "keys": [{"selector": "20261125", "key_type": "rsa", "bits": 2048, "state": "active",
             "created": 1795600000, "activated": 1795600000, "public_key": "MIIB..."}]}
States: published (in DNS, not signing yet), active (signing), retiring (in DNS, no longer signing), revoked
(record with an empty p=, key deleted), retired (record withdrawn, key deleted); _dkim_rotation.py moves keys
through them.
This module decides; it never reads or writes files (see _state_file.py) and never returns private keys.
"""

from __future__ import annotations

import base64
import copy
import time
import traceback
from collections.abc import Iterable

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
except ImportError:
    # Only making and reading keys needs it: the module fails with missing_required_lib and this traceback;
    # the rotation filters and dkim_keys state=query run without it.
    CRYPTOGRAPHY_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import DnsRecordError, check_selector

RING_VERSION = 1
KEY_TYPES = ("rsa", "ed25519")
MIN_RSA_BITS = 1024
STATES = ("published", "active", "retiring", "revoked", "retired")
# States whose private key is gone.
KEYLESS_STATES = ("revoked", "retired")


class KeyRingError(ValueError):
    """The key ring or a key request is invalid; the message says what and for which domain."""


def check_key_request(key_type: str, bits: int | None) -> None:
    if key_type not in KEY_TYPES:
        raise KeyRingError(f"DKIM key type {key_type!r} is not one of {', '.join(KEY_TYPES)}")
    if key_type == "rsa" and (not isinstance(bits, int) or isinstance(bits, bool) or bits < MIN_RSA_BITS):
        raise KeyRingError(f"RSA DKIM keys need at least {MIN_RSA_BITS} bits (RFC 8301), not {bits!r}")


def generate_private_key(key_type: str, bits: int | None = 2048) -> bytes:
    """A new private key in the form DKIM signers read: RSA as unencrypted PKCS#8 PEM (Rspamd, Mail::DKIM),
    Ed25519 as the base64 of its raw 32-byte seed (Rspamd and dkimpy; Rspamd reads a PEM file as RSA)."""
    check_key_request(key_type, bits)
    if key_type == "ed25519":
        seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        return base64.b64encode(seed) + b"\n"
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private_key(data: bytes) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """A key file's key, in either of generate_private_key's forms."""
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(data, password=None)
    else:
        try:
            key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(data.strip(), validate=True))
        except ValueError as exc:
            raise KeyRingError(f"not a PEM key nor a base64 Ed25519 seed: {exc}") from exc
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise KeyRingError(f"unsupported DKIM key {type(key).__name__}")
    return key


def public_key_b64(private_key: bytes) -> str:
    """The p= value: base64 of the SubjectPublicKeyInfo (RSA, RFC 6376) or of the raw key (Ed25519, RFC 8463)."""
    key = load_private_key(private_key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(raw).decode()


def new_ring(domain: str) -> dict:
    return {"version": RING_VERSION, "domain": domain, "keys": []}


def check_ring(ring: dict, domain: str) -> dict:
    """ring, after checking it is a key ring of this domain that this code understands."""
    if ring.get("version") != RING_VERSION or ring.get("domain") != domain or not isinstance(ring.get("keys"), list):
        raise KeyRingError(f"{domain}: the key ring state is not a version {RING_VERSION} ring of this domain")
    for key in ring["keys"]:
        if key.get("state") not in STATES or key.get("key_type") not in KEY_TYPES:
            raise KeyRingError(f"{domain}: key ring entry {key.get('selector')!r} has an unknown state or type")
        check_selector(key.get("selector"))
    return ring


def selector_for(key_type: str, now: float, taken: set[str], tag: str = "") -> str:
    """A date-like selector (20261125, or 20261125-ed25519), made unique with -2, -3, ... if taken.

    tag (the signing host's short name, e.g. mx1) goes after the date, so that several MX hosts that each keep
    their own keys for a domain never make the same selector on the same day: 20261125-mx1-ed25519.
    """
    base = "-".join([time.strftime("%Y%m%d", time.gmtime(now))] + ([tag] if tag else [])
                    + ([] if key_type == "rsa" else [key_type]))
    selector, n = base, 1
    while selector in taken:
        n += 1
        selector = f"{base}-{n}"
    return check_selector(selector)


def active_key(ring: dict, key_type: str) -> dict | None:
    return next((k for k in ring["keys"] if k["key_type"] == key_type and k["state"] == "active"), None)


def key_file_name(domain: str, selector: str) -> str:
    """<domain>.<selector>.key: Rspamd's $domain.$selector.key path template and dkimproxy's map agree."""
    return f"{domain}.{selector}.key"


def key_files_of(domain: str, filenames: Iterable[str]) -> list[str]:
    """The names among filenames (a key directory's listing) that are key files of domain: key_file_name of
    the domain and a selector the ring allows. A selector is one DNS label, so the files of example.com.au
    (example.com.au.<selector>.key) or of sub.example.com never count as example.com's."""
    prefix, suffix = key_file_name(domain, "\0").split("\0", 1)
    found = []
    for name in filenames:
        if name.startswith(prefix) and name.endswith(suffix):
            try:
                check_selector(name[len(prefix):len(name) - len(suffix)])
            except DnsRecordError:
                continue
            found.append(name)
    return sorted(found)


def plan_initial_keys(ring: dict, wanted: dict[str, int | None], now: float, tag: str = "") -> list[dict]:
    """The keys to create so that each wanted type (type -> RSA bits or None) has a key.

    On a ring that signs with no key yet, the first key of each type is active at once: there is no published
    key to keep using (publish the records before sending mail). On a ring that signs already, a new type
    (Ed25519 turned on later) starts `published`: it signs only once rotate_keys.yml has seen its record in
    DNS for the lead time, so no message is signed with a selector receivers cannot look up yet.
    A type that has a key needs nothing here, whatever its size: a new RSA size is a rotation
    (rotate_keys.yml), which makes the successor with that size.
    """
    taken = {k["selector"] for k in ring["keys"]}
    signing = any(k["state"] == "active" for k in ring["keys"])
    planned = []
    for key_type, bits in wanted.items():
        check_key_request(key_type, bits)
        if any(k["key_type"] == key_type and k["state"] in ("active", "published") for k in ring["keys"]):
            continue
        selector = selector_for(key_type, now, taken, tag)
        taken.add(selector)
        key = {"selector": selector, "key_type": key_type, "bits": bits if key_type == "rsa" else None,
               "created": int(now)}
        planned.append(dict(key, state="published", visible_since=None) if signing
                       else dict(key, state="active", activated=int(now)))
    return planned


def with_keys(ring: dict, keys: list[dict]) -> dict:
    """A copy of ring with keys added (each with its public_key filled in by the caller)."""
    updated = copy.deepcopy(ring)
    updated["keys"].extend(keys)
    return updated


def published_keys(ring: dict) -> list[dict]:
    """What the DNS must carry for this ring: every key that is not retired; a revoked key with an empty
    public key (p=, RFC 6376 3.6.1). public_key None: a key not made yet (check mode), nothing to publish."""
    return [{"selector": k["selector"], "key_type": k["key_type"],
             "public_key": "" if k["state"] == "revoked" else k["public_key"], "state": k["state"]}
            for k in ring["keys"] if k["state"] != "retired"]
