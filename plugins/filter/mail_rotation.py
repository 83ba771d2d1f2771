# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filters for key rotation; the logic lives in module_utils/_dkim_rotation.py and _srs.py. They
compute only: the SRS secrets are made and rotated by the srs_secrets module, not here."""

from __future__ import annotations

from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_keyring import KeyRingError
from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_rotation import (
    Schedule,
    parse_duration,
    schedule_errors,
    summary,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._srs import SrsError, schedule_from
from ansible_collections.opendove.mailserver.plugins.module_utils._srs import schedule_errors as srs_schedule_errors

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
    """Lines per domain from a dkim_keys state=rotate result: what signs, waits, and what DNS needs; a domain
    removed from the site only while its keys still change."""
    actions = result.get("actions", {})
    return ([line for domain, ring in sorted(result.get("domains", {}).items())
             for line in summary(domain, ring["active"], actions.get(domain, []))]
            + [line for domain in sorted(result.get("removed", {})) if actions.get(domain)
               for line in [f"{domain}: removed from the site, its keys are retired after the grace period"]
               + summary(domain, {}, actions[domain])[1:]])


def mail_srs_rotation_errors(rotation, srs_ttl=None):
    """Why mail_srs_rotation (with opensmtpd_srs_ttl; None: its default) cannot make a safe SRS rotation; empty when it can."""
    try:
        return [f"mail_srs_rotation: {error}" for error in srs_schedule_errors(schedule_from(rotation, srs_ttl))]
    except SrsError as exc:
        return [f"mail_srs_rotation: {exc}"]


class FilterModule:
    """opendove.mailserver rotation filters."""

    def filters(self):
        return {"mail_dkim_rotation_errors": mail_dkim_rotation_errors, "mail_rotation_summary": mail_rotation_summary,
                "mail_srs_rotation_errors": mail_srs_rotation_errors}
