# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scheduled DKIM key rotation: the state machine of one domain's key ring, pure, with the clock and the DNS
observations passed in (unit tests drive it with an injected clock and made-up DNS answers).

Per key type (rsa, ed25519) a ring has exactly one `active` key, the one the signer uses. A type wanted later
(Ed25519 turned on for a ring that signs with RSA) gets its first key `published`, and it activates by steps 2
and 3, replacing none. A run:
  1. creates a `published` successor when the active key has signed for `interval` (or the wanted RSA size
     changed): reported for publication, not signing;
  2. records when the successor's TXT record is first seen with exactly its value on every name server asked
     (`visible_since`); any other answer (absent, wrong, unreachable, timeout) resets it;
  3. activates the successor once it is visible now and has been for `lead` (longer than the record's TTL):
     the old key becomes `retiring` (still published, no longer signing);
  4. after `grace` (longer than any queue lifetime) a retiring key is `revoked` (record `p=` empty, private key
     deleted) for `revocation`, or straight `retired` (record gone, private key deleted) when that is 0.
A run whose clock is behind the ring's latest timestamp changes nothing: durations are never measured
backwards.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_keyring import (
    KeyRingError,
    check_key_request,
    check_ring,
    selector_for,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._schedule import (
    DAY,
    ScheduleError,
    seconds_errors,
    when,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._schedule import parse_duration as _parse_duration

VISIBLE = "visible"
# What a DNS check of one record can answer; only VISIBLE lets a key go ahead.
DNS_STATUSES = (VISIBLE, "absent", "mismatch", "unreachable", "timeout")
_TIMESTAMPS = ("created", "activated", "visible_since", "deactivated", "revoked", "retired")


@dataclass(frozen=True)
class Schedule:
    """Durations in seconds. Defaults: M3AAWG DKIM Key Rotation BCP (rotate at least every six months, keep
    the old key published after the switch); docs/rotation.md explains each."""

    interval: int = 180 * DAY  # an active key signs this long before its successor is made
    lead: int = 3 * DAY  # a successor's record is visible this long before it signs
    grace: int = 7 * DAY  # a replaced key stays published this long after it stopped signing
    revocation: int = 0  # then an empty p= record this long; 0: the record is removed at once
    record_ttl: int = 3600  # TTL of the published DKIM records
    queue_lifetime: int = 4 * DAY  # the longest a message may wait in a queue (OpenSMTPD's expiry: 4 days)


def schedule_errors(schedule: Schedule) -> list[str]:
    """Why these durations cannot make a safe rotation; [] when they can."""
    errors = seconds_errors(schedule)
    if errors:
        return errors
    for name in ("interval", "lead", "grace"):
        if getattr(schedule, name) == 0:
            errors.append(f"{name} is 0: every rotation step needs time")
    if schedule.lead <= schedule.record_ttl:
        errors.append(f"lead ({schedule.lead} s) must be longer than the record TTL ({schedule.record_ttl} s): "
                      "resolvers may still cache the absence of the new record")
    if schedule.grace <= schedule.queue_lifetime:
        errors.append(f"grace ({schedule.grace} s) must be longer than the queue lifetime ({schedule.queue_lifetime}"
                      " s): a message signed with the old key may still be waiting in a queue")
    if schedule.grace < schedule.lead:
        errors.append(f"grace ({schedule.grace} s) is shorter than lead ({schedule.lead} s)")
    if schedule.interval < schedule.lead:
        errors.append(f"interval ({schedule.interval} s) is shorter than lead ({schedule.lead} s)")
    return errors


def _latest(ring: dict) -> float:
    stamps = [key[name] for key in ring["keys"] for name in _TIMESTAMPS if key.get(name) is not None]
    return max(stamps + [ring.get("checked") or 0])


def rotate(ring: dict, wanted: Mapping[str, int | None], schedule: Schedule, now: float,
           dns: Mapping[str, str], tag: str = "") -> tuple[dict, list[dict]]:
    """The ring after one run at `now`, and what the run did or waits for.

    wanted: key type -> RSA bits (None for Ed25519). dns: selector -> one of DNS_STATUSES for the records of
    the ring's `published` keys (a missing selector counts as not visible). New keys come with public_key None:
    the caller makes them (and must record the ring before it does, so an interrupted run is completed).
    Actions: {action, domain, selector, key_type, ...}; action is create, visible, hidden, wait, activate,
    deactivate, revoke, retire or clock.
    """
    domain = ring["domain"]
    check_ring(ring, domain)
    errors = schedule_errors(schedule)
    if errors:
        raise KeyRingError(f"{domain}: rotation schedule: {'; '.join(errors)}")
    for key_type, bits in wanted.items():
        check_key_request(key_type, bits)
    latest = _latest(ring)
    run = _Run(copy.deepcopy(ring), wanted, schedule, now, dns, tag)
    if now < latest:
        # No step is measured against a clock that went back; a record seen missing still restarts its wait.
        for key in run.ring["keys"]:
            if key["state"] == "published" and dns.get(key["selector"]) != VISIBLE:
                run.forget_visibility(key)
        run.actions.append({"action": "clock", "domain": domain,
                            "reason": f"the clock ({int(now)}) is behind this ring's last step ({int(latest)}): "
                                      "nothing else changes until it has caught up"})
        return run.ring, run.actions
    for key_type in sorted({key["key_type"] for key in run.ring["keys"]} | set(wanted)):
        run.advance(key_type)
    run.ring["checked"] = now
    return run.ring, run.actions


class _Run:
    """One run over one ring: the steps of each key type, and the actions they took."""

    def __init__(self, ring: dict, wanted: Mapping[str, int | None], schedule: Schedule, now: float,
                 dns: Mapping[str, str], tag: str) -> None:
        self.ring, self.wanted, self.schedule, self.now, self.dns, self.tag = ring, wanted, schedule, now, dns, tag
        self.domain = ring["domain"]
        self.taken = {key["selector"] for key in ring["keys"]}
        self.actions: list[dict] = []

    def act(self, action: str, key: dict, **details) -> None:
        self.actions.append({"action": action, "domain": self.domain, "selector": key["selector"],
                             "key_type": key["key_type"], **details})

    def advance(self, key_type: str) -> None:
        keys = [key for key in self.ring["keys"] if key["key_type"] == key_type]
        active = [key for key in keys if key["state"] == "active"]
        pending = [key for key in keys if key["state"] == "published"]
        if len(active) > 1 or len(pending) > 1:
            raise KeyRingError(f"{self.domain}: {len(active)} active and {len(pending)} pending {key_type} keys; "
                               "a ring has at most one of each")
        if active and key_type not in self.wanted:
            self.stop(active[0], pending[0] if pending else None)
        elif active:
            self.succeed(active[0], pending[0] if pending else None)
        elif key_type in self.wanted:
            self.introduce(key_type, pending[0] if pending else None)
        elif pending:
            pending[0].update(state="retired", retired=self.now)  # wanted no more before it signed: can go at once
            self.act("retire", pending[0])
        for key in keys:
            self.expire(key)

    def stop(self, active: dict, pending: dict | None) -> None:
        """The type is no longer wanted: its key stops signing and stays published for the grace period."""
        active.update(state="retiring", deactivated=self.now)
        self.act("deactivate", active, reason=f"{active['key_type']} keys are no longer wanted")
        if pending is not None:
            pending.update(state="retired", retired=self.now)  # never signed: its record can go at once
            self.act("retire", pending)

    def succeed(self, active: dict, pending: dict | None) -> None:
        """Create the active key's successor when due, watch its record, and activate it when safe."""
        key_type, bits = active["key_type"], self.wanted[active["key_type"]]
        if pending is not None and key_type == "rsa" and pending.get("bits") != bits:
            raise KeyRingError(f"{self.domain}: RSA key {pending['selector']} ({pending.get('bits')} bits) is being "
                               f"rotated in; a change to {bits} bits must wait until it is active")
        if pending is None:
            resize = key_type == "rsa" and active.get("bits") != bits
            if resize or self.now - active["activated"] >= self.schedule.interval:
                selector = selector_for(key_type, self.now, self.taken, self.tag)
                self.taken.add(selector)
                self.ring["keys"].append({"selector": selector, "key_type": key_type,
                                          "bits": bits if key_type == "rsa" else None, "state": "published",
                                          "created": self.now, "visible_since": None, "public_key": None})
                self.act("create", self.ring["keys"][-1], reason="size change" if resize else
                         f"{active['selector']} has signed for the interval")
            return
        if self.ready(pending):
            pending.update(state="active", activated=self.now)
            active.update(state="retiring", deactivated=self.now)
            self.act("activate", pending, replaces=active["selector"])

    def introduce(self, key_type: str, pending: dict | None) -> None:
        """A wanted type without an active key on a ring that signs with another type (Ed25519 turned on later):
        its first key goes through the same publish, visible, lead time steps as a successor, replacing none."""
        if not any(key["state"] == "active" for key in self.ring["keys"]):
            raise KeyRingError(f"{self.domain}: no active key: site.yml makes the first ones")
        if pending is None:
            selector = selector_for(key_type, self.now, self.taken, self.tag)
            self.taken.add(selector)
            self.ring["keys"].append({"selector": selector, "key_type": key_type,
                                      "bits": self.wanted[key_type] if key_type == "rsa" else None,
                                      "state": "published", "created": self.now, "visible_since": None,
                                      "public_key": None})
            self.act("create", self.ring["keys"][-1], reason=f"{key_type} keys are wanted now")
        elif self.ready(pending):
            pending.update(state="active", activated=self.now)
            self.act("activate", pending, replaces=None)

    def ready(self, pending: dict) -> bool:
        """Whether a published key may sign now: its record visible on every server, for the lead time."""
        status = self.dns.get(pending["selector"], "unknown")
        if status != VISIBLE:
            self.forget_visibility(pending)
            self.act("wait", pending, status=status, activates_at=None)
            return False
        if pending.get("visible_since") is None:
            pending["visible_since"] = self.now
            self.act("visible", pending)
        if self.now - pending["visible_since"] < self.schedule.lead:
            self.act("wait", pending, status=status, activates_at=pending["visible_since"] + self.schedule.lead)
            return False
        return True

    def forget_visibility(self, key: dict) -> None:
        """The record was not seen as it should be: its lead time starts again when it is."""
        if key.get("visible_since") is not None:
            key["visible_since"] = None
            self.act("hidden", key, status=self.dns.get(key["selector"], "unknown"))

    def expire(self, key: dict) -> None:
        """A retiring key past its grace period is revoked (or retired); a revoked one past its period retired."""
        if key["state"] == "retiring" and self.now - key["deactivated"] >= self.schedule.grace:
            if self.schedule.revocation:
                key.update(state="revoked", revoked=self.now)
                self.act("revoke", key)
            else:
                key.update(state="retired", retired=self.now)
                self.act("retire", key)
        elif key["state"] == "revoked" and self.now - key["revoked"] >= self.schedule.revocation:
            key.update(state="retired", retired=self.now)
            self.act("retire", key)


def parse_duration(value: object) -> int:
    """Seconds from an int or a string such as "3600", "72h", "1w", "1d12h"; KeyRingError when it is neither."""
    try:
        return _parse_duration(value)
    except ScheduleError as exc:
        raise KeyRingError(str(exc)) from exc


# What each action means to the operator; {what} is "<domain>: <selector> (<key type>)".
_SUMMARY = {
    "create": "{what} is new: publish its record (dns_records.yml); it signs once it has been visible for the "
              "lead time",
    "wait": "{what} waits for its record in DNS ({status}): publish what dns_records.yml writes",
    "visible": None,
    "hidden": None,
    "activate": "{what} signs now",
    "deactivate": "{what} no longer signs ({reason}); it stays published for the grace period",
    "revoke": "{what} is revoked: publish its record with an empty p= (dns_records.yml)",
    "retire": "{what} is retired: remove its record (dns_records.yml no longer writes it)",
    "clock": "{domain}: {reason}",
}


def summary(domain: str, active: Mapping[str, Mapping], actions: list[dict]) -> list[str]:
    """What a rotation run means for one domain, in lines an operator acts on (what to publish or remove)."""
    signing = ", ".join(f"{key['selector']} ({key_type})" for key_type, key in sorted(active.items()))
    lines = [f"{domain}: signs with {signing or 'no key'}"]
    for action in actions:
        what = f"{domain}: {action.get('selector')} ({action.get('key_type')})"
        if action["action"] == "wait" and action["activates_at"] is not None:
            lines.append(f"{what} is visible in DNS; it signs from {when(action['activates_at'])} on")
        elif action["action"] == "activate" and action["replaces"]:
            lines.append(f"{what} signs now; {action['replaces']} stays published for the grace period")
        elif _SUMMARY[action["action"]]:
            lines.append(_SUMMARY[action["action"]].format(what=what, **action))
    return lines
