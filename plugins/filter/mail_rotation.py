# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filters for key rotation; the logic lives in module_utils/_dkim_rotation.py and _srs.py."""

from __future__ import annotations

import base64
import json
import time

from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_keyring import KeyRingError
from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_rotation import (
    Schedule,
    parse_duration,
    schedule_errors,
    summary,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._srs import (
    SrsError,
    check_state,
    new_secret,
    parse_conf,
    plan,
    schedule_from,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._srs import schedule_errors as srs_schedule_errors
from ansible_collections.opendove.mailserver.plugins.module_utils._srs import summary as srs_summary

_DURATIONS = ("interval", "lead", "grace", "revocation", "record_ttl", "queue_lifetime")


def mail_dkim_rotation_errors(rotation):
    """Why mail_dkim_rotation cannot make a safe schedule; empty when it can."""
    rotation = rotation or {}
    unknown = sorted(set(rotation) - set(_DURATIONS) - {"nameservers"})
    if unknown:
        return [f"mail_dkim_rotation: unknown keys {', '.join(unknown)}"]
    try:
        schedule = Schedule(**{name: parse_duration(rotation[name]) for name in _DURATIONS if name in rotation})
    except KeyRingError as exc:
        return [f"mail_dkim_rotation: {exc}"]
    return [f"mail_dkim_rotation: {error}" for error in schedule_errors(schedule)]


def mail_rotation_summary(result):
    """Lines per domain from a dkim_keys state=rotate result: what signs, waits, and what DNS needs."""
    return [line for domain, ring in sorted(result.get("domains", {}).items())
            for line in summary(domain, ring["active"], result.get("actions", {}).get(domain, []))]


def mail_srs_rotation_errors(rotation, srs_ttl=None):
    """Why mail_srs_rotation (with opensmtpd_srs_ttl; None: its default) cannot make a safe SRS rotation; empty when it can."""
    try:
        return [f"mail_srs_rotation: {error}" for error in srs_schedule_errors(schedule_from(rotation, srs_ttl))]
    except SrsError as exc:
        return [f"mail_srs_rotation: {exc}"]


def mail_srs_plan(read_results, play_hosts, rotation, srs_ttl=None, rotate=False):
    """The SRS secrets every MX host shares after this run, from a looped slurp of each host's state file and
    srs.conf (item: [host, path]): {state, errors, summary}. errors and summary never hold a secret."""
    try:
        schedule = schedule_from(rotation, srs_ttl)
        states, legacy = {}, {}
        for result in read_results:
            host, path = result["item"]
            if "content" not in result:
                if "not found" not in str(result.get("msg", "")):
                    raise SrsError(f"{host}: cannot read {path}: {result.get('msg')}")
                continue
            text = base64.b64decode(result["content"]).decode("utf-8", "replace")
            if path.endswith(".json"):
                try:
                    states[host] = check_state(json.loads(text), f"{host}: {path}")
                except ValueError:
                    raise SrsError(f"{host}: {path} is not JSON; restore it from a backup or from another MX "
                                   "host") from None
            else:
                legacy[host] = parse_conf(text)
        state, actions = plan(states, legacy, schedule, time.time(), new_secret, rotate)
    except SrsError as exc:
        return {"state": None, "errors": [str(exc)], "summary": []}
    left = sorted(host for host, held in states.items() if held != state and host not in play_hosts)
    errors = [f"SRS secrets are shared by every MX host, and {', '.join(left)} (not in this run) would keep "
              "others: run without --limit"] if left else []
    return {"state": state, "errors": errors, "summary": srs_summary(state, actions, schedule)}


class FilterModule:
    """opendove.mailserver rotation filters."""

    def filters(self):
        return {"mail_dkim_rotation_errors": mail_dkim_rotation_errors, "mail_rotation_summary": mail_rotation_summary,
                "mail_srs_rotation_errors": mail_srs_rotation_errors, "mail_srs_plan": mail_srs_plan}
