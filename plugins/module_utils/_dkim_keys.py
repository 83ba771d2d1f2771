# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the dkim_keys module does, as plain functions over a key directory: read each domain's ring (refusing
key files without one), decide every ring's next state at `now` (first keys, or one rotation step with the DNS
questions passed in), tell whether a ring must be written, and write it in an order a killed run recovers from.

The module keeps the Ansible side: arguments, owners and modes (set_fs_attributes_if_different), check mode
(plan without apply). Unit tests call these functions in a temporary directory with their own clock and DNS
answers. Reading and writing files goes through _state_file.py; private keys never appear in what these
functions return.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_keyring import (
    KEYLESS_STATES,
    KeyRingError,
    check_key_request,
    check_ring,
    generate_private_key,
    key_file_name,
    key_files_of,
    new_ring,
    plan_initial_keys,
    public_key_b64,
    published_keys,
    with_keys,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_rotation import (
    Schedule,
    parse_duration,
    rotate,
    schedule_errors,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_check import (
    authoritative_servers,
    record_status,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import (
    check_selector,
    dkim_txt_value,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._state_file import (
    load_json,
    save_json,
    write_atomic,
)


@dataclass(frozen=True)
class KeyRequest:
    """What the rings must hold: wanted key type -> RSA bits (None for Ed25519), the selector tag, and the
    rotation schedule with the name servers to check new records on (empty: the domains' authoritative ones)."""

    wanted: Mapping[str, int | None]
    tag: str = ""
    schedule: Schedule = field(default_factory=Schedule)
    nameservers: tuple[str, ...] = ()
    # Key files the running signer's configuration names (signer_in_use): never deleted while it does.
    in_use: frozenset[str] = frozenset()


def key_request(rsa_bits: int, ed25519: bool, tag: str, rotation: Mapping[str, object]) -> KeyRequest:
    """The module's key options, checked: KeyRingError (or DnsRecordError, for a tag that makes no selector)
    saying what is wrong, before anything is read or written. rotation: the module's rotation option,
    durations as parse_duration reads them, plus nameservers."""
    wanted = {"rsa": rsa_bits, **({"ed25519": None} if ed25519 else {})}
    for key_type, bits in wanted.items():
        check_key_request(key_type, bits)
    if tag:
        check_selector(tag)
    schedule = Schedule(**{name: parse_duration(value) for name, value in rotation.items() if name != "nameservers"})
    errors = schedule_errors(schedule)
    if errors:
        raise KeyRingError(f"rotation: {'; '.join(errors)}")
    return KeyRequest(wanted, tag, schedule, tuple(rotation.get("nameservers") or ()))


@dataclass(frozen=True)
class Dns:
    """The DNS questions a rotation asks (_dns_check's by default; unit tests answer them themselves).
    authoritative_servers(domain) -> addresses; record_status(name, expected value, servers) -> a DNS status."""

    authoritative_servers: Callable[[str], list[str]] = authoritative_servers
    record_status: Callable[[str, str, Iterable[str]], str] = record_status


def state_file(key_dir: str, domain: str) -> str:
    return os.path.join(key_dir, f"{domain}.json")


def key_file(key_dir: str, domain: str, selector: str) -> str:
    return os.path.join(key_dir, key_file_name(domain, selector))


def load_ring(key_dir: str, domain: str) -> dict:
    """The domain's ring from its state file; a new empty ring when it has none and no key files either.
    Key files without a state file are an error: a new key must never be made beside keys that may sign."""
    ring = load_json(state_file(key_dir, domain))
    if ring is None:
        orphans = [os.path.join(key_dir, name)
                   for name in key_files_of(domain, os.listdir(key_dir) if os.path.isdir(key_dir) else [])]
        if orphans:
            raise KeyRingError(f"{domain}: key files exist ({', '.join(orphans)}) but the key ring state "
                               f"{domain}.json is missing; restore it rather than making new keys")
        return new_ring(domain)
    return check_ring(ring, domain)


def summary(ring: dict, key_dir: str) -> dict:
    """What the module returns for a ring: the active key of each type (selector and key file) and the
    records to publish (txt_value None for a key not made yet, in check mode)."""
    return {
        "active": {k["key_type"]: {"selector": k["selector"],
                                   "key_file": key_file(key_dir, ring["domain"], k["selector"])}
                   for k in ring["keys"] if k["state"] == "active"},
        "publish": [dict(k, txt_value=None if k["public_key"] is None
                         else dkim_txt_value(k["key_type"], k["public_key"]))
                    for k in published_keys(ring)],
        # Withdrawn from DNS: the live check reports one still served as stale.
        "retired": [k["selector"] for k in ring["keys"] if k["state"] == "retired"],
    }


def query(key_dir: str, domains: Iterable[str]) -> tuple[dict[str, dict], dict[str, dict]]:
    """(domains, removed): domain -> summary of its ring as it is, for the domains asked and for the rings of
    domains removed from the site; for state=query, reads only."""
    domains = list(domains)
    return ({domain: summary(load_ring(key_dir, domain), key_dir) for domain in domains},
            {domain: summary(load_ring(key_dir, domain), key_dir) for domain in removed_domains(key_dir, domains)})


def name_servers(domain: str, nameservers: Iterable[str], dns: Dns) -> list[str]:
    """The servers to ask about the domain's records: the ones listed, else its authoritative servers."""
    try:
        return list(nameservers) or dns.authoritative_servers(domain)
    except Exception:  # noqa: BLE001 - any resolver failure means "cannot tell yet", never "go ahead"
        return []


def dns_statuses(ring: dict, servers: list[str], dns: Dns) -> dict[str, str]:
    """selector -> DNS status of the record of every key waiting to be activated (made, not yet signing)."""
    return {k["selector"]: dns.record_status(f"{k['selector']}._domainkey.{ring['domain']}",
                                             dkim_txt_value(k["key_type"], k["public_key"]), servers)
            for k in ring["keys"] if k["state"] == "published" and k.get("public_key")}


def check_new_selectors(ring: dict, updated: dict, servers: list[str], dns: Dns) -> None:
    """A new selector whose name already holds a TXT record belongs to someone else (another host, another
    service): its own record could never be published there, so the rotation stops before making a key."""
    known = {k["selector"] for k in ring["keys"]}
    for key in updated["keys"]:
        name = f"{key['selector']}._domainkey.{ring['domain']}"
        if key["selector"] not in known and dns.record_status(name, "", servers) == "mismatch":
            raise KeyRingError(f"{ring['domain']}: the new selector {key['selector']} is already published in DNS "
                               f"({name} has a TXT record that is not this ring's): remove that record or give "
                               "this host another selector_tag; nothing changed")


def _without_check_time(ring: dict) -> dict:
    return {key: value for key, value in ring.items() if key != "checked"}


def _unmade(ring: dict) -> list[dict]:
    """The keys the ring lists with a private key that has not been made (new, or a run killed before)."""
    return [k for k in ring["keys"] if k["state"] not in KEYLESS_STATES and not k.get("public_key")]


def signer_in_use(key_dir: str, configs: Iterable[str]) -> frozenset[str]:
    """The key files of key_dir that the signer's configuration texts name (its path in the text)."""
    names = os.listdir(key_dir) if os.path.isdir(key_dir) else []
    paths = [os.path.join(key_dir, name) for name in names if name.endswith(".key")]
    return frozenset(path for path in paths if any(path in config for config in configs))


def stale_files(ring: dict, key_dir: str, in_use: frozenset[str] = frozenset()) -> list[str]:
    """The key files of keyless keys still there (a run killed before it deleted them) that may go: not those
    the signer's configuration still names (in_use); they go in a later run, once it no longer does."""
    paths = [key_file(key_dir, ring["domain"], k["selector"]) for k in ring["keys"] if k["state"] in KEYLESS_STATES]
    return [path for path in paths if os.path.exists(path) and path not in in_use]


def kept_in_use(ring: dict, key_dir: str, in_use: frozenset[str]) -> list[str]:
    """The key files of keyless keys that stay because the signer's configuration still names them."""
    paths = [key_file(key_dir, ring["domain"], k["selector"]) for k in ring["keys"] if k["state"] in KEYLESS_STATES]
    return [path for path in paths if path in in_use and os.path.exists(path)]


def needs_apply(ring: dict, updated: dict, key_dir: str, in_use: frozenset[str] = frozenset()) -> bool:
    """Whether the ring must be written: it changed (other than the time of its last check), a key must be
    made, or a key file must be deleted."""
    return (_without_check_time(updated) != _without_check_time(ring) or bool(stale_files(updated, key_dir, in_use))
            or bool(_unmade(updated)))


@dataclass(frozen=True)
class RingPlan:
    """One domain's ring as it is (before) and as this run leaves it (after); actions: what a rotation did or
    waits for (None outside state=rotate); changes: whether apply must write it; created and activated: the
    keys this run makes and those that sign from this run on, as domain/selector (in check mode: would)."""

    before: dict
    after: dict
    actions: list[dict] | None
    changes: bool
    created: list[str]
    activated: list[str]
    removed: bool = False  # the domain is no longer in the site: its keys are being retired

    @property
    def domain(self) -> str:
        return self.before["domain"]


def _ring_plan(ring: dict, updated: dict, actions: list[dict] | None, key_dir: str,
               in_use: frozenset[str]) -> RingPlan:
    domain, was = ring["domain"], {k["selector"]: k["state"] for k in ring["keys"]}
    return RingPlan(ring, updated, actions, needs_apply(ring, updated, key_dir, in_use),
                    created=[f"{domain}/{k['selector']}" for k in _unmade(updated)],
                    activated=[f"{domain}/{k['selector']}" for k in updated["keys"]
                               if k["state"] == "active" and was.get(k["selector"]) != "active"])


def plan_ring(key_dir: str, domain: str, request: KeyRequest, now: float, rotation: bool, dns: Dns) -> RingPlan:
    """One ring's next state at `now`: its first keys, or with rotation one step along the schedule. DNS is
    asked only when a key waits for its record or a new selector is made."""
    ring = load_ring(key_dir, domain)
    actions = None
    if rotation:
        asks = any(k["state"] == "published" and k.get("public_key") for k in ring["keys"]) and request.wanted
        servers = name_servers(domain, request.nameservers, dns) if asks else []
        updated, actions = rotate(ring, request.wanted, request.schedule, now, dns_statuses(ring, servers, dns),
                                  request.tag)
        if len(updated["keys"]) > len(ring["keys"]):
            check_new_selectors(ring, updated, servers or name_servers(domain, request.nameservers, dns), dns)
    else:
        updated = with_keys(ring, [dict(k, public_key=None)
                                   for k in plan_initial_keys(ring, dict(request.wanted), now, request.tag)])
    return _ring_plan(ring, updated, actions, key_dir, request.in_use)


def removed_domains(key_dir: str, domains: Iterable[str]) -> list[str]:
    """The domains with a key ring in key_dir that are not among domains (removed from the site)."""
    listed = {domain.lower() for domain in domains}
    names = os.listdir(key_dir) if os.path.isdir(key_dir) else []
    return sorted(name.removesuffix(".json") for name in names
                  if name.endswith(".json") and name.removesuffix(".json").lower() not in listed)


def plan(key_dir: str, domains: Iterable[str], request: KeyRequest, now: float, rotation: bool = False,
         dns: Dns | None = None) -> list[RingPlan]:
    """Every ring's next state, decided before anything is written: an error in one domain (KeyRingError,
    StateFileError) changes nothing anywhere. With rotation, the rings of domains removed from the site go
    along the schedule with no key type wanted: their keys stop signing, stay published for the grace period,
    and are then retired and their files deleted, as a replaced key is; their DNS is never asked."""
    domains = list(domains)
    plans = [plan_ring(key_dir, domain, request, now, rotation, dns or Dns()) for domain in domains]
    if rotation:
        unwanted = dataclasses.replace(request, wanted={})
        plans += [dataclasses.replace(plan_ring(key_dir, domain, unwanted, now, True, dns or Dns()), removed=True)
                  for domain in removed_domains(key_dir, domains)]
    return plans


def _complete(ring: dict, key_dir: str, mode: int, uid: int, gid: int,
              make_key: Callable[[str, int | None], bytes]) -> dict:
    """Generate the private key of every entry that has no public key yet (new, or interrupted before)."""
    for key in _unmade(ring):
        pem = make_key(key["key_type"], key.get("bits"))
        write_atomic(key_file(key_dir, ring["domain"], key["selector"]), pem, mode, uid, gid)
        key["public_key"] = public_key_b64(pem)
    return ring


def apply(ring: dict, key_dir: str, mode: int, uid: int = -1, gid: int = -1,
          make_key: Callable[[str, int | None], bytes] = generate_private_key,
          in_use: frozenset[str] = frozenset()) -> dict:
    """Write a ring that changed, make its new keys and delete the keys it no longer holds, in an order that
    a killed run leaves something the next run completes: the state first (new selectors without keys are
    completed, keyless states lose their files), then the key files, then the state with the public keys.
    Returns the ring as written (public keys filled in)."""
    path = state_file(key_dir, ring["domain"])
    save_json(path, ring, mode, uid, gid)
    ring = _complete(ring, key_dir, mode, uid, gid, make_key)
    save_json(path, ring, mode, uid, gid)
    for name in stale_files(ring, key_dir, in_use):
        os.unlink(name)
    return ring


def managed_paths(ring: dict, key_dir: str) -> list[str]:
    """The files whose owner, group and mode the module keeps: the state file and every key file the ring
    holds a private key for."""
    return [state_file(key_dir, ring["domain"])] + [key_file(key_dir, ring["domain"], k["selector"])
                                                    for k in ring["keys"] if k["state"] not in KEYLESS_STATES]


def key_dir_problem(key_dir: str) -> str | None:
    """Why key_dir cannot be the key directory; None when it can (it may not exist yet)."""
    if os.path.exists(key_dir) and not os.path.isdir(key_dir):
        return f"key_dir {key_dir} is not a directory"
    return None


def make_key_dir(key_dir: str) -> None:
    """Create key_dir 0750 (its parents 0755); the module then sets its owner and group."""
    os.makedirs(os.path.dirname(key_dir), mode=0o755, exist_ok=True)
    os.mkdir(key_dir, 0o750)


def report(plans: Iterable[RingPlan], key_dir: str, in_use: frozenset[str] = frozenset()) -> dict:
    """The module's return values (but changed): domains, removed, created, actions, activated, kept, and the diff of the
    rings' selectors and states (never key material). A plan whose ring was written carries it as after
    (dataclasses.replace(plan, after=apply(...))), with its public keys."""
    plans = list(plans)
    return {
        "domains": {p.domain: summary(p.after, key_dir) for p in plans if not p.removed},
        "removed": {p.domain: summary(p.after, key_dir) for p in plans if p.removed},
        "created": [name for p in plans for name in p.created],
        "actions": {p.domain: p.actions for p in plans if p.actions is not None},
        "activated": [name for p in plans for name in p.activated],
        "kept": [path for p in plans for path in kept_in_use(p.after, key_dir, in_use)],
        "diff": {"before": {p.domain: {k["selector"]: k["state"] for k in p.before["keys"]} for p in plans},
                 "after": {p.domain: {k["selector"]: k["state"] for k in p.after["keys"]} for p in plans}},
    }
