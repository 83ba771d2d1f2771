# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SRS secrets shared by every MX host of a deployment, and their rotation. Pure: the clock and the maker of
new secrets are passed in (unit tests inject both; the srs_secrets module passes time.time and new_secret).

OpenSMTPD signs new SRS addresses with `srs key` and accepts bounces to addresses signed with `srs key` or
`srs key backup`. A bounce may come back to any MX host, so every host holds the same two secrets. The state
(one JSON object, the same on every host):
    {"current": {"secret": str, "created": int}, "backup": {"secret": str, "replaced": int} | null}
A rotation moves the current secret to the backup slot and makes a new current one; the backup is dropped
after its grace period, which is never shorter than the lifetime of an SRS address (`srs ttl`).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from secrets import token_urlsafe

from ansible_collections.opendove.mailserver.plugins.module_utils._schedule import (
    DAY,
    ScheduleError,
    parse_duration,
    seconds_errors,
    when,
)

# The secret goes unquoted into smtpd.conf: letters, digits, - and _ only, and long enough to guess never.
_SECRET = re.compile(r"[A-Za-z0-9_-]{32,}")


class SrsError(ValueError):
    """SRS state or schedule that cannot be used; the message never holds a secret."""


@dataclass(frozen=True)
class SrsSchedule:
    """Durations in seconds; docs/rotation.md explains each."""

    interval: int = 365 * DAY  # the current secret signs new addresses this long, then it is the backup
    grace: int = 30 * DAY  # the backup still validates bounces this long after it was replaced
    address_ttl: int = 4 * DAY  # OpenSMTPD's `srs ttl`: how long an SRS address is accepted at all


def schedule_errors(schedule: SrsSchedule) -> list[str]:
    """Why these durations cannot make a safe SRS rotation; [] when they can."""
    errors = seconds_errors(schedule, positive=True)
    if errors:
        return errors
    if schedule.grace < schedule.address_ttl:
        errors.append(f"grace ({schedule.grace} s) is shorter than the SRS address lifetime (opensmtpd_srs_ttl, "
                      f"{schedule.address_ttl} s): bounces to addresses made just before a rotation would be refused")
    if schedule.interval <= schedule.grace:
        errors.append(f"interval ({schedule.interval} s) must be longer than grace ({schedule.grace} s): a second "
                      "rotation would push out a backup still in its grace period")
    return errors


def schedule_from(rotation: Mapping[str, object] | None, srs_ttl: object = None) -> SrsSchedule:
    """The schedule of mail_srs_rotation ({interval, grace}; None or {} for the defaults) and opensmtpd_srs_ttl
    (None for OpenSMTPD's default), durations as parse_duration reads them; SrsError for an unknown key or a
    duration that cannot be read. Whether the durations make a safe rotation is schedule_errors' question."""
    rotation = rotation or {}
    unknown = sorted(set(rotation) - {"interval", "grace"})
    if unknown:
        raise SrsError(f"unknown keys {', '.join(unknown)}")
    durations = {**rotation, **({} if srs_ttl is None else {"address_ttl": srs_ttl})}
    try:
        return SrsSchedule(**{name: parse_duration(value) for name, value in durations.items()})
    except ScheduleError as exc:
        raise SrsError(str(exc)) from exc


def check_state(state: object, where: str) -> dict:
    """The state if it is well formed; SrsError naming `where` (a host) otherwise."""
    def entry(value: object, stamp: str) -> bool:
        return (isinstance(value, dict) and set(value) == {"secret", stamp}
                and isinstance(value["secret"], str) and bool(_SECRET.fullmatch(value["secret"]))
                and isinstance(value[stamp], int) and not isinstance(value[stamp], bool))
    if not (isinstance(state, dict) and set(state) == {"current", "backup"} and entry(state["current"], "created")
            and (state["backup"] is None or entry(state["backup"], "replaced"))):
        raise SrsError(f"{where}: the SRS state is not what opendove writes (current and backup secrets with "
                       "their times); restore it from a backup or from another MX host")
    return state


def new_secret(token: Callable[[], str] = lambda: token_urlsafe(36)) -> str:
    """A new secret: 48 random URL-safe characters (288 bits) from token, which smtpd.conf takes unquoted, as one
    word: an unquoted value that starts with "-" is a syntax error there, and token_urlsafe makes one in 64."""
    while True:
        secret = token()
        if not secret.startswith("-"):
            return secret


def parse_conf(text: str) -> list[str]:
    """The secrets of an srs.conf (`srs key X`, `srs key backup Y`) that opendove could have written, current
    first."""
    found = (re.findall(r"^\s*srs\s+key\s+(\S+)\s*$", text, re.M)[:1]
             + re.findall(r"^\s*srs\s+key\s+backup\s+(\S+)\s*$", text, re.M)[:1])
    return [secret for secret in found if _SECRET.fullmatch(secret)]


def _order(state: dict) -> tuple[int, int]:
    return state["current"]["created"], (state["backup"] or {}).get("replaced", 0)


def plan(states: Mapping[str, dict | None], legacy: Mapping[str, list[str]], schedule: SrsSchedule, now: float,
         make_secret: Callable[[], str], rotate: bool) -> tuple[dict, list[dict]]:
    """The state every host should hold after this run, and what the run did.

    states: host -> its checked state (None: it has none). legacy: host -> the secrets of an srs.conf written
    before the state file existed (current first). The newest state wins (a distribution cut short leaves some
    hosts behind). With rotate, the backup is dropped after `grace` and the current secret rotated after
    `interval`. Actions: {action, ...}; action is create, adopt, rotate, drop or clock.
    """
    errors = schedule_errors(schedule)
    if errors:
        raise SrsError(f"SRS rotation schedule: {'; '.join(errors)}")
    stamp = int(now)
    known = [state for state in states.values() if state is not None]
    actions: list[dict] = []
    if known:
        state = copy.deepcopy(max(known, key=_order))
    else:
        secrets = list(dict.fromkeys(s for host in sorted(legacy) for s in legacy[host]))
        if secrets:
            # Secrets each host made on its own before: keep two of them valid for bounces already under way.
            state = {"current": {"secret": secrets[0], "created": stamp},
                     "backup": {"secret": secrets[1], "replaced": stamp} if len(secrets) > 1 else None}
            actions.append({"action": "adopt", "kept": min(len(secrets), 2), "found": len(secrets)})
        else:
            state = {"current": {"secret": make_secret(), "created": stamp}, "backup": None}
            actions.append({"action": "create"})
    if not rotate or not known:
        return state, actions
    latest = max(_order(state))
    if stamp < latest:
        actions.append({"action": "clock", "reason": f"the clock ({stamp}) is behind the SRS state's last step "
                                                     f"({latest}): nothing changes until it has caught up"})
        return state, actions
    if state["backup"] is not None and stamp - state["backup"]["replaced"] >= schedule.grace:
        state["backup"] = None
        actions.append({"action": "drop"})
    if stamp - state["current"]["created"] >= schedule.interval:
        state["backup"] = {"secret": state["current"]["secret"], "replaced": stamp}
        state["current"] = {"secret": make_secret(), "created": stamp}
        actions.append({"action": "rotate", "backup_until": stamp + schedule.grace})
    return state, actions


def read_hosts(reads: Iterable[Mapping]) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """What each MX host holds, from reads of its state file (a path ending in .json) and its srs.conf, each
    {item: [host, path], content: the file in base64 (None: not read), msg: why it was not read}, as a looped
    ansible.builtin.slurp returns them: (host -> checked state, host -> the secrets of its srs.conf). A file
    not found is a host without it; any other failure to read it, or a state file that is not JSON or not
    what opendove writes, is an SrsError naming the host and the file, never a secret."""
    states: dict[str, dict] = {}
    legacy: dict[str, list[str]] = {}
    for read in reads:
        try:
            host, path = read["item"]
        except (KeyError, TypeError, ValueError):
            raise SrsError(f"a read names no [host, path] item: {read.get('item')!r}") from None
        if read.get("content") is None:
            if "not found" not in str(read.get("msg")):
                raise SrsError(f"{host}: cannot read {path}: {read.get('msg')}")
            continue
        try:
            text = base64.b64decode(read["content"], validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            raise SrsError(f"{host}: what was read of {path} is not base64") from None
        if path.endswith(".json"):
            try:
                data = json.loads(text)
            except ValueError:
                raise SrsError(f"{host}: {path} is not JSON; restore it from a backup or from another MX "
                               "host") from None
            states[host] = check_state(data, f"{host}: {path}")
        else:
            legacy[host] = parse_conf(text)
    return states, legacy


def shared_plan(reads: Iterable[Mapping], play_hosts: Collection[str], schedule: SrsSchedule, now: float,
                make_secret: Callable[[], str], rotate: bool) -> tuple[dict, list[dict]]:
    """The state every MX host holds after this run, and what the run did (plan), from the reads of every MX
    host's files (read_hosts). A host outside this run (play_hosts: --limit) that would keep other secrets
    than the others is an SrsError: the hosts would no longer share them."""
    states, legacy = read_hosts(reads)
    state, actions = plan(states, legacy, schedule, now, make_secret, rotate)
    left = sorted(host for host, held in states.items() if held != state and host not in play_hosts)
    if left:
        raise SrsError(f"SRS secrets are shared by every MX host, and {', '.join(left)} (not in this run) would "
                       "keep others: run without --limit")
    return state, actions


def summary(state: dict, actions: list[dict], schedule: SrsSchedule) -> list[str]:
    """What the SRS secrets are now, in lines without a secret."""
    lines = []
    for action in actions:
        if action["action"] == "create":
            lines.append("SRS: a new secret is shared by every MX host")
        elif action["action"] == "adopt":
            lines.append(f"SRS: {action['found']} secret(s) found in the hosts' srs.conf; {action['kept']} kept, "
                         "now shared by every MX host")
        elif action["action"] == "rotate":
            lines.append(f"SRS: rotated; the previous secret validates bounces until {when(action['backup_until'])}")
        elif action["action"] == "drop":
            lines.append("SRS: the backup secret is dropped (its grace period is over)")
        else:
            lines.append(f"SRS: {action['reason']}")
    lines.append(f"SRS: the secret of {when(state['current']['created'])} signs until "
                 f"{when(state['current']['created'] + schedule.interval)}"
                 + (f"; the backup validates bounces until {when(state['backup']['replaced'] + schedule.grace)}"
                    if state["backup"] else ""))
    return lines
