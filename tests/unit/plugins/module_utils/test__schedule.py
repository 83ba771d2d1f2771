"""Durations and times the DKIM and SRS schedules share: parsing, field checks, the operator's time format."""

from dataclasses import dataclass

import pytest

from ansible_collections.opendove.mailserver.plugins.module_utils import _dkim_rotation, _srs
from ansible_collections.opendove.mailserver.plugins.module_utils._schedule import (
    DAY,
    ScheduleError,
    is_seconds,
    parse_duration,
    seconds_errors,
    when,
)


@dataclass(frozen=True)
class Durations:
    first: object = 1
    second: object = 0


def test_both_schedules_use_these_helpers():
    assert _srs.DAY == _dkim_rotation.DAY == DAY == 24 * 3600
    assert _srs.when is _dkim_rotation.when is when


@pytest.mark.parametrize("value, seconds", [
    (3600, 3600), (0, 0), ("0", 0), ("3600", 3600), (" 72h ", 259200), ("1W", 604800), ("1d12h", 129600),
    ("1d 12h", 129600), ("180d", 15552000), ("30m", 1800), ("45s", 45),
])
def test_durations_are_read_as_seconds(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "1y", "d", "3 days", "-1d", "1.5d", "12h1", None, True, 1.5])
def test_unreadable_durations_are_refused_with_the_value_named(value):
    with pytest.raises(ScheduleError, match=r"^duration .* is not seconds or <number><s\|m\|h\|d\|w>, such as 72h"):
        parse_duration(value)


@pytest.mark.parametrize("value, minimum, expected", [
    (0, 0, True), (0, 1, False), (1, 1, True), (-1, 0, False), (True, 0, False), (1.0, 0, False), ("1", 0, False),
])
def test_whole_seconds(value, minimum, expected):
    assert is_seconds(value, minimum) is expected


def test_seconds_errors_name_each_bad_field():
    assert seconds_errors(Durations()) == []
    assert seconds_errors(Durations(first=-1, second="1h")) == [
        "first -1 is not a whole number of seconds", "second '1h' is not a whole number of seconds"]


def test_positive_schedules_refuse_zero():
    assert seconds_errors(Durations(), positive=True) == ["second 0 is not a positive whole number of seconds"]
    assert seconds_errors(Durations(first=False, second=2), positive=True) == [
        "first False is not a positive whole number of seconds"]


@pytest.mark.parametrize("timestamp, text", [
    (0, "1970-01-01 00:00 UTC"), (1_800_000_000, "2027-01-15 08:00 UTC"), (1_800_000_059.9, "2027-01-15 08:00 UTC"),
])
def test_times_are_printed_in_utc_to_the_minute(timestamp, text):
    assert when(timestamp) == text


def test_each_schedule_reports_a_bad_duration_as_its_own_error():
    with pytest.raises(_dkim_rotation.KeyRingError, match="duration 'soon'"):
        _dkim_rotation.parse_duration("soon")
    with pytest.raises(_srs.SrsError, match="duration 'soon'"):
        _srs.schedule_from({"grace": "soon"})
