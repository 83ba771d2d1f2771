# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filters for key rotation; the logic lives in module_utils/_dkim_rotation.py."""

from __future__ import annotations

from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_keyring import KeyRingError
from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_rotation import (
    Schedule,
    parse_duration,
    schedule_errors,
    summary,
)

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


class FilterModule:
    """opendove.mailserver rotation filters."""

    def filters(self):
        return {"mail_dkim_rotation_errors": mail_dkim_rotation_errors, "mail_rotation_summary": mail_rotation_summary}
