"""SRS secrets shared by every MX host: made once, adopted from older per-host files, the newest state spread,
rotated on schedule (current -> backup), the backup dropped after its grace; what the srs_secrets module
decides from the hosts' files. Injected clock and secret maker."""

import base64
import itertools
import json

import pytest

from ansible_collections.opendove.mailserver.plugins.module_utils._srs import (
    DAY,
    SrsError,
    SrsSchedule,
    check_state,
    new_secret,
    parse_conf,
    plan,
    read_hosts,
    schedule_errors,
    schedule_from,
    shared_plan,
    summary,
)

SCHEDULE = SrsSchedule()
T0 = 1_800_000_000


@pytest.fixture()
def maker():
    counter = itertools.count(1)
    return lambda: f"secret{next(counter):027d}"


def state(current="a" * 40, created=T0, backup=None, replaced=None):
    return {"current": {"secret": current, "created": created},
            "backup": None if backup is None else {"secret": backup, "replaced": replaced}}


def test_defaults_are_a_year_and_a_month():
    assert (SCHEDULE.interval, SCHEDULE.grace, SCHEDULE.address_ttl) == (365 * DAY, 30 * DAY, 4 * DAY)
    assert schedule_errors(SCHEDULE) == []


@pytest.mark.parametrize("schedule, message", [
    (SrsSchedule(grace=3 * DAY), "shorter than the SRS address lifetime"),
    (SrsSchedule(interval=30 * DAY), "must be longer than grace"),
    (SrsSchedule(interval=0), "not a positive whole number"),
    (SrsSchedule(grace=True), "not a positive whole number"),
])
def test_contradictory_durations(schedule, message, maker):
    assert any(message in e for e in schedule_errors(schedule))
    with pytest.raises(SrsError, match=message):
        plan({"h1": state()}, {}, schedule, T0, maker, rotate=True)


def test_first_run_makes_one_secret_for_every_host(maker):
    new, actions = plan({"h1": None, "h2": None}, {}, SCHEDULE, T0, maker, rotate=False)
    assert new == state("secret" + "1".zfill(27)) and actions == [{"action": "create"}]


def test_secrets_the_hosts_made_alone_are_adopted_two_kept(maker):
    legacy = {"h2": ["b" * 48], "h1": ["a" * 48], "h3": ["b" * 48, "c" * 48]}
    new, actions = plan({}, legacy, SCHEDULE, T0, maker, rotate=True)
    assert new == state("a" * 48, T0, "b" * 48, T0)
    assert actions == [{"action": "adopt", "kept": 2, "found": 3}]


def test_the_newest_state_wins_and_a_new_host_gets_it(maker):
    old = state("a" * 40, T0)
    rotated = state("b" * 40, T0 + 400 * DAY, "a" * 40, T0 + 400 * DAY)
    for rotate in (False, True):
        new, actions = plan({"h1": old, "h2": rotated, "h3": None}, {"h3": ["c" * 40]}, SCHEDULE,
                            T0 + 401 * DAY, maker, rotate)
        assert new == rotated and actions == []


def test_site_run_never_rotates(maker):
    new, actions = plan({"h1": state()}, {}, SCHEDULE, T0 + 10 * 365 * DAY, maker, rotate=False)
    assert new == state() and actions == []


def test_nothing_due(maker):
    new, actions = plan({"h1": state()}, {}, SCHEDULE, T0 + 364 * DAY, maker, rotate=True)
    assert new == state() and actions == []


def test_rotation_moves_the_current_secret_to_the_backup(maker):
    now = T0 + 365 * DAY
    new, actions = plan({"h1": state(), "h2": state()}, {}, SCHEDULE, now, maker, rotate=True)
    assert new == state("secret" + "1".zfill(27), now, "a" * 40, now)
    assert actions == [{"action": "rotate", "backup_until": now + 30 * DAY}]


def test_backup_dropped_after_grace_not_before(maker):
    rotated = state("b" * 40, T0, "a" * 40, T0)
    assert plan({"h": rotated}, {}, SCHEDULE, T0 + 30 * DAY - 1, maker, True) == (rotated, [])
    new, actions = plan({"h": rotated}, {}, SCHEDULE, T0 + 30 * DAY, maker, True)
    assert new == state("b" * 40, T0) and actions == [{"action": "drop"}]


def test_late_run_drops_the_old_backup_before_rotating(maker):
    now = T0 + 800 * DAY
    new, actions = plan({"h": state("b" * 40, T0, "a" * 40, T0)}, {}, SCHEDULE, now, maker, True)
    assert new == state("secret" + "1".zfill(27), now, "b" * 40, now)
    assert [a["action"] for a in actions] == ["drop", "rotate"]


def test_clock_behind_changes_nothing(maker):
    rotated = state("b" * 40, T0, "a" * 40, T0)
    new, actions = plan({"h": rotated}, {}, SCHEDULE, T0 - 60, maker, True)
    assert new == rotated and [a["action"] for a in actions] == ["clock"]


def test_interrupted_distribution_is_completed(maker):
    """A run that rotated on h1 and was killed before h2: the next run gives h2 the rotated state, no second
    rotation."""
    now = T0 + 365 * DAY
    rotated = plan({"h1": state(), "h2": state()}, {}, SCHEDULE, now, maker, True)[0]
    again, actions = plan({"h1": rotated, "h2": state()}, {}, SCHEDULE, now + 3600, maker, True)
    assert again == rotated and actions == []


@pytest.mark.parametrize("broken", [
    None, [], {"current": {"secret": "a" * 40, "created": T0}},
    state(current="short"), state(current="a" * 39 + " "), state(created="yesterday"), state(created=True),
    state(backup="b" * 40, replaced=None), {**state(), "extra": 1},
])
def test_corrupt_state_is_an_error_without_the_secret(broken):
    with pytest.raises(SrsError, match="h1: the SRS state is not what opendove writes") as caught:
        check_state(broken, "h1")
    assert "a" * 39 not in str(caught.value)


def test_srs_conf_secrets_current_first():
    text = "srs key backup " + "b" * 40 + "\n# comment\nsrs key " + "a" * 40 + "\n"
    assert parse_conf(text) == ["a" * 40, "b" * 40]
    assert parse_conf("srs key short\n") == [] and parse_conf("") == []


def test_summary_never_shows_a_secret(maker):
    now = T0 + 365 * DAY
    new, actions = plan({"h": state()}, {}, SCHEDULE, now, maker, True)
    lines = summary(new, actions, SCHEDULE)
    assert lines == ["SRS: rotated; the previous secret validates bounces until 2028-02-14 08:00 UTC",
                     "SRS: the secret of 2028-01-15 08:00 UTC signs until 2029-01-14 08:00 UTC; "
                     "the backup validates bounces until 2028-02-14 08:00 UTC"]
    assert not any("a" * 40 in line or "secret0" in line for line in lines)


def test_a_new_secret_never_starts_with_a_dash():
    """smtpd reads an unquoted `srs key -...` as a syntax error (checked with smtpd -n on Debian 13)."""
    made = iter(["-" + "a" * 47, "--" + "b" * 46, "c" * 48])
    assert new_secret(lambda: next(made)) == "c" * 48


def test_new_secrets_are_long_random_and_fit_smtpd_conf():
    made = {new_secret() for count in range(20)}
    assert len(made) == 20
    for secret in made:
        assert len(secret) == 48 and parse_conf(f"srs key {secret}\n") == [secret]
        check_state({"current": {"secret": secret, "created": T0}, "backup": None}, "h1")


@pytest.mark.parametrize("rotation, ttl, expected", [
    ({}, None, SrsSchedule()), (None, None, SrsSchedule()),
    ({"interval": "52w", "grace": "10d"}, "5d", SrsSchedule(interval=364 * DAY, grace=10 * DAY, address_ttl=5 * DAY)),
    ({"interval": 400 * DAY}, 3600, SrsSchedule(interval=400 * DAY, address_ttl=3600)),
])
def test_schedule_from_the_inventory(rotation, ttl, expected):
    assert schedule_from(rotation, ttl) == expected


@pytest.mark.parametrize("rotation, ttl, message", [
    ({"drop": "1d"}, None, "unknown keys drop"), ({"interval": "2y"}, None, "duration '2y'"),
    ({}, "soon", "duration 'soon'"),
])
def test_schedule_from_refuses_what_it_cannot_read(rotation, ttl, message):
    with pytest.raises(SrsError, match=message):
        schedule_from(rotation, ttl)


STATE_FILE = "/var/lib/opendove/srs.json"
CONF = "/etc/smtpd/srs.conf"


def read(host, path, content=None, msg="file not found: x"):
    """One element of the module's reads, as the role reduces a slurp result."""
    if content is None:
        return {"item": [host, path], "content": None, "msg": msg}
    return {"item": [host, path], "content": base64.b64encode(content.encode()).decode(), "msg": None}


def reads_of(held: dict) -> list[dict]:
    """host -> (state or None, srs.conf text or None): the reads of every host's two files."""
    return [r for host, (state_, conf) in held.items()
            for r in (read(host, STATE_FILE, None if state_ is None else json.dumps(state_)), read(host, CONF, conf))]


def test_reads_give_each_hosts_state_and_old_secrets():
    held = {"mx1": (state(), "srs key " + "a" * 40 + "\n"), "mx2": (None, "srs key " + "c" * 40 + "\n"),
            "mx3": (None, None)}
    assert read_hosts(reads_of(held)) == ({"mx1": state()}, {"mx1": ["a" * 40], "mx2": ["c" * 40]})


@pytest.mark.parametrize("bad, message", [
    (read("mx1", STATE_FILE, "{not json"), "mx1: /var/lib/opendove/srs.json is not JSON"),
    (read("mx1", STATE_FILE, json.dumps({"current": "a" * 40})),
     "mx1: /var/lib/opendove/srs.json: the SRS state is not what opendove writes"),
    (read("mx1", STATE_FILE, msg="Permission denied"), "mx1: cannot read /var/lib/opendove/srs.json: Permission denied"),
    (read("mx2", CONF, msg="Failed to connect to the host via ssh"),
     "mx2: cannot read /etc/smtpd/srs.conf: Failed to connect to the host via ssh"),
    (read("mx1", CONF, msg=None), "mx1: cannot read /etc/smtpd/srs.conf: None"),
    ({"item": ["mx1", CONF], "content": "not base64!", "msg": None}, "mx1: what was read of /etc/smtpd/srs.conf"),
    ({"item": ["mx1"], "content": None, "msg": None}, "a read names no \\[host, path\\] item"),
])
def test_a_host_that_cannot_be_read_stops_the_plan(bad, message, maker):
    with pytest.raises(SrsError, match=f"^{message}"):
        shared_plan(reads_of({"mx1": (state(), None)}) + [bad], ["mx1", "mx2"], SCHEDULE, T0, maker, False)


def test_first_run_spreads_one_new_secret(maker):
    new, actions = shared_plan(reads_of({"mx1": (None, None), "mx2": (None, None)}), ["mx1", "mx2"], SCHEDULE, T0,
                               maker, rotate=False)
    assert new == state("secret" + "1".zfill(27)) and actions == [{"action": "create"}]


def test_a_new_host_gets_the_others_secrets(maker):
    reads = reads_of({"mx1": (state(), None), "mx2": (None, None)})
    assert shared_plan(reads, ["mx1", "mx2"], SCHEDULE, T0 + DAY, maker, rotate=True) == (state(), [])


def test_a_host_outside_the_run_must_not_be_left_behind(maker):
    reads = reads_of({"mx1": (state(), None), "mx2": (state(), None)})
    due = T0 + 365 * DAY
    with pytest.raises(SrsError, match=r"^SRS secrets are shared by every MX host, and mx2 \(not in this run\) "
                                       "would keep others: run without --limit$"):
        shared_plan(reads, ["mx1"], SCHEDULE, due, maker, rotate=True)
    # Nothing due, or the host already holds the newest state: --limit is fine.
    assert shared_plan(reads, ["mx1"], SCHEDULE, due, maker, rotate=False) == (state(), [])
    rotated = state("b" * 40, due, "a" * 40, due)
    reads = reads_of({"mx1": (state(), None), "mx2": (rotated, None)})
    assert shared_plan(reads, ["mx1"], SCHEDULE, due + 1, maker, rotate=True) == (rotated, [])
