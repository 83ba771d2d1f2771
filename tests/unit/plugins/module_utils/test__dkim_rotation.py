"""Unit tests of the DKIM rotation state machine, with an injected clock and made-up DNS answers."""

from __future__ import annotations

import copy
import random

import pytest
from ansible_collections.opendove.mailserver.plugins.module_utils import _dkim_rotation as rot
from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_keyring import KeyRingError

DAY = rot.DAY
T0 = 1_800_000_000
SCHEDULE = rot.Schedule(interval=30 * DAY, lead=2 * DAY, grace=5 * DAY, revocation=0)
WANTED = {"rsa": 2048}


def ring_with(*keys: dict) -> dict:
    return {"version": 1, "domain": "example.test", "keys": [dict(k) for k in keys]}


ACTIVE = {"selector": "a", "key_type": "rsa", "bits": 2048, "state": "active", "created": T0, "activated": T0,
          "public_key": "PA"}


def run(ring, now, dns=None, wanted=None, schedule=SCHEDULE):
    return rot.rotate(ring, WANTED if wanted is None else wanted, schedule, now, dns or {}, tag="mx1")


def states(ring) -> dict[str, str]:
    return {k["selector"]: k["state"] for k in ring["keys"]}


def made(ring) -> dict:
    """The ring as the caller leaves it: every new key made (its public key filled in)."""
    ring = copy.deepcopy(ring)
    for key in ring["keys"]:
        if key["public_key"] is None and key["state"] == "published":
            key["public_key"] = f"P{key['selector']}"
    return ring


@pytest.mark.parametrize("changes, message", [
    ({}, None),
    ({"interval": 0}, "interval is 0"),
    ({"lead": 3600}, "lead (3600 s) must be longer than the record TTL (3600 s)"),
    ({"grace": 4 * DAY}, "must be longer than the queue lifetime"),
    ({"grace": 5 * DAY, "lead": 6 * DAY}, "grace (432000 s) is shorter than lead (518400 s)"),
    ({"interval": DAY}, "interval (86400 s) is shorter than lead"),
    ({"revocation": -1}, "revocation -1 is not a whole number of seconds"),
    ({"lead": True}, "lead True is not a whole number"),
])
def test_schedule_validation(changes, message):
    errors = rot.schedule_errors(rot.Schedule(**{**SCHEDULE.__dict__, **changes}))
    assert (errors == []) if message is None else any(message in e for e in errors), errors


def test_default_schedule_is_sound():
    assert rot.schedule_errors(rot.Schedule()) == []


def test_bad_schedule_changes_nothing():
    ring = ring_with(ACTIVE)
    with pytest.raises(KeyRingError, match="rotation schedule: grace"):
        run(ring, T0 + 40 * DAY, schedule=rot.Schedule(interval=30 * DAY, lead=2 * DAY, grace=DAY))
    assert ring == ring_with(ACTIVE)


def test_full_rotation_step_by_step():
    ring = ring_with(ACTIVE)
    ring, actions = run(ring, T0 + 30 * DAY - 1)
    assert actions == [] and states(ring) == {"a": "active"}

    ring, actions = run(ring, T0 + 30 * DAY)
    [create] = actions
    new = create["selector"]
    assert create["action"] == "create" and new.endswith("-mx1") and states(ring) == {"a": "active", new: "published"}
    assert ring["keys"][1]["public_key"] is None  # the caller makes the key

    ring = made(ring)
    t = T0 + 30 * DAY + 3600
    ring, actions = run(ring, t, {new: "absent"})
    assert [a["action"] for a in actions] == ["wait"] and actions[0]["activates_at"] is None

    ring, actions = run(ring, t + 60, {new: "visible"})
    assert [a["action"] for a in actions] == ["visible", "wait"]
    assert actions[1]["activates_at"] == t + 60 + 2 * DAY

    ring, actions = run(ring, t + 60 + 2 * DAY - 1, {new: "visible"})
    assert [a["action"] for a in actions] == ["wait"] and states(ring)[new] == "published"

    activation = t + 60 + 2 * DAY
    ring, actions = run(ring, activation, {new: "visible"})
    assert actions == [{"action": "activate", "domain": "example.test", "selector": new, "key_type": "rsa",
                        "replaces": "a"}]
    assert states(ring) == {"a": "retiring", new: "active"}

    ring, actions = run(ring, activation + 5 * DAY - 1)
    assert actions == [] and states(ring)["a"] == "retiring"
    ring, actions = run(ring, activation + 5 * DAY)
    assert [a["action"] for a in actions] == ["retire"] and states(ring) == {"a": "retired", new: "active"}


def test_revocation_period_publishes_an_empty_key_first():
    schedule = rot.Schedule(interval=30 * DAY, lead=2 * DAY, grace=5 * DAY, revocation=10 * DAY)
    retiring = dict(ACTIVE, state="retiring", deactivated=T0 + DAY)
    ring = ring_with(retiring, dict(ACTIVE, selector="b", activated=T0 + DAY))
    ring, actions = run(ring, T0 + 6 * DAY, schedule=schedule)
    assert [a["action"] for a in actions] == ["revoke"] and states(ring)["a"] == "revoked"
    ring, actions = run(ring, T0 + 16 * DAY - 1, schedule=schedule)
    assert actions == []
    ring, actions = run(ring, T0 + 16 * DAY, schedule=schedule)
    assert [a["action"] for a in actions] == ["retire"] and states(ring)["a"] == "retired"


@pytest.mark.parametrize("status", ["absent", "mismatch", "unreachable", "timeout", "unknown"])
def test_only_a_visible_record_lets_a_key_activate(status):
    pending = {"selector": "b", "key_type": "rsa", "bits": 2048, "state": "published", "created": T0 + 30 * DAY,
               "visible_since": T0 + 30 * DAY, "public_key": "PB"}
    ring = ring_with(ACTIVE, pending)
    ring, actions = run(ring, T0 + 40 * DAY, {} if status == "unknown" else {"b": status})
    assert states(ring) == {"a": "active", "b": "published"}
    assert [a["action"] for a in actions] == ["hidden", "wait"]
    assert ring["keys"][1]["visible_since"] is None  # visibility must be seen anew, for the whole lead time


def test_a_record_that_vanishes_restarts_the_lead_time():
    ring = made(run(ring_with(ACTIVE), T0 + 30 * DAY)[0])
    new = ring["keys"][1]["selector"]
    t = T0 + 31 * DAY
    ring = run(ring, t, {new: "visible"})[0]
    ring = run(ring, t + DAY, {new: "timeout"})[0]
    ring, actions = run(ring, t + 2 * DAY, {new: "visible"})
    assert states(ring)[new] == "published" and actions[-1]["activates_at"] == t + 4 * DAY
    ring, actions = run(ring, t + 4 * DAY, {new: "visible"})
    assert states(ring)[new] == "active"


def test_clock_going_backwards_changes_nothing():
    ring = made(run(ring_with(ACTIVE), T0 + 30 * DAY)[0])
    new = ring["keys"][1]["selector"]
    ring = run(ring, T0 + 31 * DAY, {new: "visible"})[0]
    before = copy.deepcopy(ring)
    after, actions = run(ring, T0 + 40 * DAY - 10 * DAY, {new: "visible"})
    assert after == before and [a["action"] for a in actions] == ["clock"]


def test_clock_behind_still_forgets_a_record_seen_missing():
    ring = made(run(ring_with(ACTIVE), T0 + 30 * DAY)[0])
    new = ring["keys"][1]["selector"]
    ring = run(ring, T0 + 31 * DAY, {new: "visible"})[0]
    after, actions = run(ring, T0 + 30 * DAY + 1, {new: "timeout"})
    assert [a["action"] for a in actions] == ["hidden", "clock"] and after["keys"][1]["visible_since"] is None
    assert states(after) == states(ring)


@pytest.mark.parametrize("step", ["create", "visible", "activate", "retire"])
def test_an_interrupted_step_is_done_by_the_next_run(step):
    """A run killed before it saved its ring leaves the previous ring: the next run, later, does the step."""
    ring = ring_with(ACTIVE)
    times = {"create": T0 + 30 * DAY, "visible": T0 + 31 * DAY, "activate": T0 + 33 * DAY, "retire": T0 + 38 * DAY}
    history = []
    for name, when in times.items():
        dns = {k["selector"]: "visible" for k in ring["keys"] if k["state"] == "published"}
        saved = ring
        ring, actions = run(ring, when, dns)
        ring = made(ring)
        history.append([a["action"] for a in actions])
        if name == step:
            # The run dies: its ring is never saved. The next run, an hour later, redoes it.
            again, actions_again = run(saved, when + 3600, dns)
            assert [a["action"] for a in actions_again] == history[-1]
            assert states(again) == states(ring)


def test_a_created_key_without_its_key_file_is_never_published_or_activated():
    """Killed after recording the new selector but before making its key: the key is made by the next run
    (dkim_keys completes it); until then it has no record and cannot go active."""
    ring = run(ring_with(ACTIVE), T0 + 30 * DAY)[0]
    new = ring["keys"][1]["selector"]
    ring, actions = run(ring, T0 + 40 * DAY, {})
    assert states(ring) == {"a": "active", new: "published"} and len(ring["keys"]) == 2


def test_size_change_starts_a_rotation_but_not_in_the_middle_of_one():
    ring, actions = run(ring_with(ACTIVE), T0 + DAY, wanted={"rsa": 3072})
    assert actions[0]["action"] == "create" and ring["keys"][1]["bits"] == 3072
    with pytest.raises(KeyRingError, match="a change to 4096 bits must wait until it is active"):
        run(made(ring), T0 + 2 * DAY, wanted={"rsa": 4096})


def test_unwanted_type_stops_signing_and_retires_after_grace():
    ed = dict(ACTIVE, selector="e", key_type="ed25519", bits=None)
    ring, actions = run(ring_with(ACTIVE, ed), T0 + DAY)
    assert states(ring) == {"a": "active", "e": "retiring"}
    ring, actions = run(ring, T0 + 6 * DAY)
    assert states(ring)["e"] == "retired"


def test_a_ring_that_signs_with_nothing_needs_site_yml_first():
    with pytest.raises(KeyRingError, match="no active key: site.yml makes the first ones"):
        run(ring_with(), T0 + DAY, wanted={"rsa": 2048, "ed25519": None})


def test_a_type_turned_on_later_signs_only_after_its_record_was_visible_for_the_lead_time():
    wanted = {"rsa": 2048, "ed25519": None}
    ring, actions = run(ring_with(ACTIVE), T0 + DAY, wanted=wanted)
    new = ring["keys"][-1]
    assert (new["key_type"], new["state"], new["public_key"]) == ("ed25519", "published", None)
    assert [(a["action"], a["key_type"]) for a in actions] == [("create", "ed25519")]
    new["public_key"] = "made"
    selector = new["selector"]
    ring, actions = run(ring, T0 + 2 * DAY, dns={selector: "missing"}, wanted=wanted)
    assert states(ring)[selector] == "published" and actions[-1]["action"] == "wait"
    ring, actions = run(ring, T0 + 3 * DAY, dns={selector: rot.VISIBLE}, wanted=wanted)
    assert states(ring)[selector] == "published"
    ring, actions = run(ring, T0 + 5 * DAY - 1, dns={selector: rot.VISIBLE}, wanted=wanted)
    assert states(ring)[selector] == "published"
    ring, actions = run(ring, T0 + 5 * DAY, dns={selector: rot.VISIBLE}, wanted=wanted)
    assert states(ring) == {"a": "active", selector: "active"}
    assert actions[-1] == {"action": "activate", "domain": "example.test", "selector": selector,
                           "key_type": "ed25519", "replaces": None}
    assert f"example.test: {selector} (ed25519) signs now" in rot.summary("example.test", {}, actions)


def test_a_type_turned_off_before_its_first_key_signed_retires_it_at_once():
    pending = {"selector": "e", "key_type": "ed25519", "bits": None, "state": "published", "created": T0,
               "visible_since": None, "public_key": "made"}
    ring, actions = run(ring_with(ACTIVE, pending), T0 + DAY)
    assert states(ring) == {"a": "active", "e": "retired"}
    assert [a["action"] for a in actions] == ["retire"]


def test_each_type_rotates_on_its_own():
    ed = dict(ACTIVE, selector="e", key_type="ed25519", bits=None, activated=T0 + 10 * DAY)
    ring, actions = run(ring_with(ACTIVE, ed), T0 + 30 * DAY, wanted={"rsa": 2048, "ed25519": None})
    assert [(a["action"], a["key_type"]) for a in actions] == [("create", "rsa")]


def test_selector_is_unique_even_on_the_same_day():
    taken = dict(ACTIVE, selector=rot.selector_for("rsa", T0 + 30 * DAY, set(), "mx1"), state="retired")
    ring, actions = run(ring_with(ACTIVE, taken), T0 + 30 * DAY)
    assert actions[0]["selector"].endswith("-2")


# --- property test: 1,000 randomized schedule runs with DNS faults -------------------------------------------

def simulate(seed: int, steps: int = 1000) -> list[str]:
    """Run the schedule `steps` times with a random clock, a late operator and DNS faults; assert the
    invariants after every run; return the selectors activated, in order."""
    rnd = random.Random(seed)
    schedule = rot.Schedule(interval=10 * DAY, lead=2 * DAY, grace=5 * DAY, revocation=rnd.choice([0, 3 * DAY]))
    wanted = {"rsa": 2048, "ed25519": None}
    keys = [dict(ACTIVE), dict(ACTIVE, selector="e", key_type="ed25519", bits=None, public_key="PE")]
    ring = ring_with(*keys)
    zone = {"a": "PA", "e": "PE"}  # what the authoritative servers hold: selector -> published p=
    to_publish: dict[str, float] = {}  # selector -> when the (late) operator publishes it
    observed: dict[str, list[str]] = {}  # selector -> the DNS status each saved run saw, in run order
    now = float(T0)
    activations: list[str] = []
    first_seen: dict[str, tuple[int, float]] = {}  # selector -> (run index, time) where it was first seen
    for step in range(steps):
        now += rnd.choice([0, 60, 3600, 6 * 3600, DAY, 2 * DAY])
        if rnd.random() < 0.05:
            now -= rnd.randint(1, 2 * DAY)  # the clock steps back
        # The operator publishes reported keys late, sometimes with a typo first, and withdraws old ones.
        for key in ring["keys"]:
            sel = key["selector"]
            if key["state"] == "published" and key["public_key"] and sel not in zone and sel not in to_publish:
                to_publish[sel] = now + rnd.choice([0, 3600, DAY, 3 * DAY])
            if key["state"] == "retired":
                zone.pop(sel, None)
            if key["state"] == "revoked":
                zone[sel] = ""
        for sel, when in list(to_publish.items()):
            if now >= when:
                key = next(k for k in ring["keys"] if k["selector"] == sel)
                zone[sel] = key["public_key"] if rnd.random() > 0.1 else "TYPO"
                if zone[sel] != "TYPO":
                    del to_publish[sel]
                else:
                    to_publish[sel] = now + DAY
        # The DNS check: only an exact answer counts, and faults can hide a record but never invent one.
        dns = {}
        for key in ring["keys"]:
            if key["state"] != "published":
                continue
            exact = key["public_key"] is not None and zone.get(key["selector"]) == key["public_key"]
            fault = rnd.random()
            if exact and fault > 0.25:
                dns[key["selector"]] = "visible"
            elif exact:
                dns[key["selector"]] = rnd.choice(["timeout", "unreachable", "absent", "mismatch"])
            else:
                dns[key["selector"]] = "absent" if key["selector"] not in zone else "mismatch"
        before = ring
        after, actions = rot.rotate(ring, wanted, schedule, now, dns, "mx1")
        for action in actions:
            if action["action"] == "activate":
                sel = action["selector"]
                activations.append(sel)
                # Never signed with a key whose record was not visible, exactly, now and for the lead time:
                # the (saved) runs since the one that first saw it (at visible_since) all saw it.
                assert dns[sel] == "visible" and zone[sel] == next(
                    k["public_key"] for k in after["keys"] if k["selector"] == sel)
                first = next(k for k in before["keys"] if k["selector"] == sel)["visible_since"]
                assert first == first_seen[sel][1] and now - first >= schedule.lead
                assert all(status == "visible" for status in observed[sel][first_seen[sel][0]:]), observed[sel]
        for key_type in wanted:
            assert [k["state"] for k in after["keys"] if k["key_type"] == key_type].count("active") == 1
        active_now = {k["selector"] for k in after["keys"] if k["state"] == "active"}
        assert active_now <= {"a", "e"} | set(activations)
        # The caller: sometimes it dies before saving; otherwise it saves and makes new keys (sometimes later).
        if rnd.random() < 0.05:
            continue
        ring = made(after) if rnd.random() > 0.1 else after
        for sel, status in dns.items():
            observed.setdefault(sel, []).append(status)
        for key in ring["keys"]:
            if key["state"] == "published" and key.get("visible_since") is not None:
                first_seen.setdefault(key["selector"], (len(observed[key["selector"]]) - 1, key["visible_since"]))
            else:
                first_seen.pop(key["selector"], None)
    return activations


@pytest.mark.parametrize("seed", range(1000))
def test_random_schedules_never_sign_unpublished_and_keep_one_active_key(seed):
    simulate(seed, steps=60)


def test_one_long_random_schedule_rotates_many_times():
    assert len(simulate(2026, steps=1000)) >= 20


@pytest.mark.parametrize("value, seconds", [(3600, 3600), ("3600", 3600), ("72h", 259200), ("1w", 604800),
                                            ("1d12h", 129600), ("180d", 15552000), ("30m", 1800)])
def test_durations(value, seconds):
    assert rot.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "1y", "d", "3 days", "-1d", "1.5d", None, True])
def test_bad_durations_are_refused(value):
    with pytest.raises(KeyRingError, match="is not seconds or"):
        rot.parse_duration(value)


def test_summary_has_a_line_for_every_action_an_operator_acts_on():
    base = {"domain": "example.test", "selector": "b", "key_type": "rsa"}
    actions = [dict(base, action="create", reason="due"), dict(base, action="visible"),
               dict(base, action="activate", replaces="a"), dict(base, action="deactivate", reason="not wanted"),
               dict(base, action="revoke"), {"action": "clock", "domain": "example.test", "reason": "behind"}]
    assert rot.summary("example.test", {"rsa": {"selector": "b"}}, actions) == [
        "example.test: signs with b (rsa)",
        "example.test: b (rsa) is new: publish its record (dns_records.yml); it signs once it has been visible "
        "for the lead time",
        "example.test: b (rsa) signs now; a stays published for the grace period",
        "example.test: b (rsa) no longer signs (not wanted); it stays published for the grace period",
        "example.test: b (rsa) is revoked: publish its record with an empty p= (dns_records.yml)",
        "example.test: behind",
    ]
