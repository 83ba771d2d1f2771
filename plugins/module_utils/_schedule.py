# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durations and times shared by the rotation schedules (DKIM keys in _dkim_rotation.py, SRS secrets in _srs.py):
parsing a duration, checking a schedule's fields, and printing a Unix time for an operator. Pure: no clock is
read here; callers pass the times in."""

from __future__ import annotations

import re
import time
from dataclasses import fields

DAY = 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}


class ScheduleError(ValueError):
    """A duration that cannot be read; each schedule re-raises it as its own topic's error."""


def parse_duration(value: object) -> int:
    """Seconds from an int or a string such as "3600", "72h", "1w", "1d12h"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text.isdigit():
        return int(text)
    parts = re.findall(r"(\d+)\s*([smhdw])", text)
    if not parts or re.sub(r"\s", "", text) != "".join(number + unit for number, unit in parts):
        raise ScheduleError(f"duration {value!r} is not seconds or <number><s|m|h|d|w>, such as 72h or 1w")
    return sum(int(number) * _UNITS[unit] for number, unit in parts)


def is_seconds(value: object, minimum: int = 0) -> bool:
    """Whether value is a whole number of seconds (an int, not a bool) of at least minimum."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def seconds_errors(schedule: object, positive: bool = False) -> list[str]:
    """One message per field of a schedule dataclass that is not a whole number of seconds (with positive:
    not more than 0); [] when every field is one."""
    what = "a positive whole number of seconds" if positive else "a whole number of seconds"
    return [f"{field.name} {getattr(schedule, field.name)!r} is not {what}" for field in fields(schedule)
            if not is_seconds(getattr(schedule, field.name), 1 if positive else 0)]


def when(timestamp: float) -> str:
    """A Unix time as an operator reads it: 2026-11-25 21:40 UTC."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))
