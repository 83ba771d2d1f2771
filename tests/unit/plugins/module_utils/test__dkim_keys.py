"""What the dkim_keys module does, in-process: plan (check mode) and apply against a temporary key directory,
with an injected clock and DNS answers the tests give. No Ansible, no subprocess, no sleep."""

from __future__ import annotations

import calendar
import dataclasses
import json
import os
import stat
import time

import dkim
import pytest

from ansible_collections.opendove.mailserver.plugins.module_utils import _dkim_keys as keys_
from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_keyring import KeyRingError
from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_rotation import DAY, Schedule
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_check import record_status
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import DnsRecordError
from ansible_collections.opendove.mailserver.plugins.module_utils._state_file import StateFileError

T0 = calendar.timegm(time.strptime("2026-11-25 12:00", "%Y-%m-%d %H:%M"))
DOMAINS = ["example.test", "example.org"]
# 1024-bit RSA keeps the tests fast; the module's default is 2048.
FAST = {"interval": 20 * DAY, "lead": 2 * DAY, "grace": 5 * DAY, "record_ttl": 3600, "queue_lifetime": 4 * DAY,
        "revocation": 0}


class FakeDns:
    """TXT records the test sets (name -> values), asked through _dns_check's own status logic; counts every
    question, so tests see when DNS is asked at all."""

    def __init__(self, authoritative=("192.0.2.53",)):
        self.records: dict[str, list[str]] = {}
        self.authoritative = list(authoritative)
        self.questions: list[str] = []

    def ask(self, name, server):
        self.questions.append(name)
        return self.records.get(name, [])

    def servers(self, domain):
        if not self.authoritative:
            raise OSError("no resolver here")
        return self.authoritative

    def dns(self) -> keys_.Dns:
        return keys_.Dns(authoritative_servers=self.servers,
                         record_status=lambda name, expected, servers: record_status(name, expected, servers, self.ask))


@pytest.fixture
def key_dir(tmp_path):
    path = tmp_path / "dkim"
    keys_.make_key_dir(str(path))
    return str(path)


@pytest.fixture
def fake_dns():
    return FakeDns()


def request(ed25519=False, tag="mx1", rsa_bits=1024, **rotation):
    return keys_.key_request(rsa_bits, ed25519, tag, {**FAST, "nameservers": [], **rotation})


def run(key_dir, now, req=None, rotation=False, dns=None, domains=("example.test",), check=False):
    """One module run: plan, then apply what changed unless in check mode; the plans as the module reports."""
    plans = keys_.plan(key_dir, list(domains), req or request(), now, rotation, dns or FakeDns().dns())
    if not check:
        plans = [dataclasses.replace(p, after=keys_.apply(p.after, key_dir, 0o640)) if p.changes else p
                 for p in plans]
    return plans, keys_.report(plans, key_dir)


def listing(key_dir) -> list[tuple[str, bytes]]:
    return sorted((name, open(os.path.join(key_dir, name), "rb").read()) for name in os.listdir(key_dir))


def ring_file(key_dir, domain="example.test") -> dict:
    with open(os.path.join(key_dir, f"{domain}.json"), encoding="utf-8") as handle:
        return json.load(handle)


def states(key_dir, domain="example.test") -> dict[str, str]:
    return {k["selector"]: k["state"] for k in ring_file(key_dir, domain)["keys"]}


# The request: checked before anything is read or written.

@pytest.mark.parametrize("args, error, message", [
    ((512, False, "", {}), KeyRingError, "RSA DKIM keys need at least 1024 bits"),
    ((2048, False, "MX_1", {}), DnsRecordError, "DKIM selector 'MX_1'"),
    ((2048, False, "", {"lead": "soon"}), KeyRingError, "duration 'soon' is not seconds"),
    ((2048, False, "", {"interval": 0}), KeyRingError, "rotation: interval is 0"),
    ((2048, False, "", {"grace": 1}), KeyRingError, "rotation: grace (1 s) must be longer than the queue lifetime"),
])
def test_bad_requests_are_refused_with_the_module_message(args, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        keys_.key_request(*args)


def test_request_defaults_and_name_servers():
    req = keys_.key_request(2048, True, "mx1", {"nameservers": ["192.0.2.1#5353"]})
    assert req == keys_.KeyRequest({"rsa": 2048, "ed25519": None}, "mx1", Schedule(), ("192.0.2.1#5353",))


# Reading rings.

def test_a_domain_without_state_or_key_files_gets_a_new_ring(key_dir):
    assert keys_.load_ring(key_dir, "example.test") == {"version": 1, "domain": "example.test", "keys": []}
    assert keys_.load_ring(os.path.join(key_dir, "absent"), "example.test")["keys"] == []


def test_key_files_without_a_state_file_are_refused(key_dir):
    open(os.path.join(key_dir, "example.test.20261125-mx1.key"), "w").close()
    with pytest.raises(KeyRingError, match="the key ring state example.test.json is missing"):
        keys_.plan(key_dir, DOMAINS, request(), T0)


def test_another_domains_key_files_do_not_count(key_dir):
    for name in ("example.test.au.20261125.key", "sub.example.test.20261125.key"):
        open(os.path.join(key_dir, name), "w").close()
    [plan] = keys_.plan(key_dir, ["example.test"], request(), T0)
    assert plan.created == ["example.test/20261125-mx1"]


def test_a_corrupt_state_file_is_refused_and_nothing_is_written(key_dir):
    run(key_dir, T0, domains=DOMAINS)
    with open(os.path.join(key_dir, "example.org.json"), "w", encoding="utf-8") as handle:
        handle.write("{")
    before = listing(key_dir)
    with pytest.raises(StateFileError, match="cannot be read as JSON"):
        keys_.plan(key_dir, DOMAINS, request(ed25519=True), T0)
    assert listing(key_dir) == before


# First keys (state=present).

def test_plan_alone_is_check_mode_it_reports_and_writes_nothing(key_dir):
    plans, result = run(key_dir, T0, domains=DOMAINS, check=True)
    assert all(p.changes for p in plans)
    assert result["created"] == ["example.test/20261125-mx1", "example.org/20261125-mx1"]
    assert result["activated"] == result["created"]
    assert result["domains"]["example.test"]["publish"][0]["public_key"] is None
    assert result["domains"]["example.test"]["publish"][0]["txt_value"] is None
    assert result["diff"] == {"before": {"example.test": {}, "example.org": {}},
                              "after": {"example.test": {"20261125-mx1": "active"},
                                        "example.org": {"20261125-mx1": "active"}}}
    assert result["actions"] == {}
    assert os.listdir(key_dir) == []


def test_apply_makes_the_keys_then_a_second_run_changes_nothing(key_dir):
    plans, first = run(key_dir, T0, req=request(ed25519=True), domains=DOMAINS)
    assert sorted(os.listdir(key_dir)) == sorted(
        f"{d}.{s}" for d in DOMAINS for s in ("json", "20261125-mx1.key", "20261125-mx1-ed25519.key"))
    for name in os.listdir(key_dir):
        assert stat.S_IMODE(os.stat(os.path.join(key_dir, name)).st_mode) == 0o640
    assert "PRIVATE KEY" not in json.dumps(first)
    assert sorted(keys_.managed_paths(plans[0].after, key_dir)) == sorted(
        os.path.join(key_dir, f"example.test.{s}") for s in ("json", "20261125-mx1.key", "20261125-mx1-ed25519.key"))
    again, second = run(key_dir, T0 + DAY, req=request(ed25519=True), domains=DOMAINS)
    assert not any(p.changes for p in again) and second["created"] == [] and second["activated"] == []
    assert second["domains"] == first["domains"] == keys_.query(key_dir, DOMAINS)[0]


def test_published_record_verifies_what_the_key_signs(key_dir):
    result = run(key_dir, T0, req=request(ed25519=True))[1]
    publish = {k["selector"]: k["txt_value"] for k in result["domains"]["example.test"]["publish"]}
    message = b"From: a@example.test\r\nTo: b@elsewhere.test\r\nSubject: t\r\n\r\nbody\r\n"
    for key_type, active in result["domains"]["example.test"]["active"].items():
        with open(active["key_file"], "rb") as handle:
            private = handle.read().strip()
        signature = dkim.sign(message, active["selector"].encode(), b"example.test", private,
                              signature_algorithm=b"rsa-sha256" if key_type == "rsa" else b"ed25519-sha256")
        record = publish[active["selector"]].encode()
        assert dkim.verify(signature + message, dnsfunc=lambda name, timeout=5, r=record: r), key_type


def test_an_interrupted_run_is_completed(key_dir):
    """A run killed after recording the new selector but before writing its key."""
    state = {"version": 1, "domain": "example.test", "keys": [
        {"selector": "20261125", "key_type": "rsa", "bits": 1024, "state": "active", "created": 1,
         "activated": 1, "public_key": None}]}
    with open(os.path.join(key_dir, "example.test.json"), "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    [plan], result = run(key_dir, T0)
    assert plan.changes and result["created"] == ["example.test/20261125"] and result["activated"] == []
    assert os.path.exists(os.path.join(key_dir, "example.test.20261125.key"))
    assert ring_file(key_dir)["keys"][0]["public_key"] == result["domains"]["example.test"]["publish"][0]["public_key"]


def test_a_retired_keys_leftover_file_is_deleted(key_dir):
    """A run killed after recording the retirement but before deleting the key file."""
    run(key_dir, T0)
    ring = ring_file(key_dir)
    ring["keys"].append({"selector": "20260101-mx1", "key_type": "rsa", "bits": 1024, "state": "retired",
                         "created": 1, "activated": 1, "deactivated": 2, "retired": 3, "public_key": "P"})
    with open(os.path.join(key_dir, "example.test.json"), "w", encoding="utf-8") as handle:
        json.dump(ring, handle)
    leftover = os.path.join(key_dir, "example.test.20260101-mx1.key")
    open(leftover, "w").close()
    [plan], result = run(key_dir, T0, check=True)
    assert plan.changes and result["created"] == [] and os.path.exists(leftover)
    [plan] = run(key_dir, T0)[0]
    assert plan.changes and not os.path.exists(leftover)
    assert not run(key_dir, T0)[0][0].changes


def test_one_bad_domain_stops_every_domain(key_dir):
    open(os.path.join(key_dir, "example.org.20261125.key"), "w").close()
    with pytest.raises(KeyRingError, match="example.org: key files exist"):
        keys_.plan(key_dir, DOMAINS, request(), T0)
    assert os.listdir(key_dir) == ["example.org.20261125.key"]


def test_key_dir_is_made_0750_and_a_file_in_its_place_refused(tmp_path):
    path = str(tmp_path / "lib" / "dkim")
    assert keys_.key_dir_problem(path) is None
    keys_.make_key_dir(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750
    (tmp_path / "file").write_text("")
    assert keys_.key_dir_problem(str(tmp_path / "file")) == f"key_dir {tmp_path / 'file'} is not a directory"


# Rotation (state=rotate): the clock and DNS are the test's.

def publish(fake_dns, result, selector, domain="example.test", value=None):
    record = next(k for k in result["domains"][domain]["publish"] if k["selector"] == selector)
    fake_dns.records[f"{selector}._domainkey.{domain}"] = [value or record["txt_value"]]


def test_rotation_through_dns_from_creation_to_retirement(key_dir, fake_dns):
    dns = fake_dns.dns()
    first = run(key_dir, T0)[1]
    old = first["domains"]["example.test"]["active"]["rsa"]
    publish(fake_dns, first, old["selector"])
    [plan], nothing = run(key_dir, T0 + DAY, rotation=True, dns=dns)
    assert not plan.changes and nothing["actions"] == {"example.test": []}
    assert fake_dns.questions == []  # nothing waits for a record and nothing is new: DNS is not asked

    t = T0 + 20 * DAY
    [plan], created = run(key_dir, t, rotation=True, dns=dns)
    [(action, new)] = [(a["action"], a["selector"]) for a in created["actions"]["example.test"]]
    assert action == "create" and plan.changes and created["created"] == [f"example.test/{new}"]
    assert new == "20261215-mx1" and os.path.exists(os.path.join(key_dir, f"example.test.{new}.key"))
    assert fake_dns.questions == [f"{new}._domainkey.example.test"]  # is the new name someone else's?

    # Not in DNS yet: nothing changes, however often it runs.
    [plan], waiting = run(key_dir, t + 3600, rotation=True, dns=dns)
    assert not plan.changes and waiting["actions"]["example.test"] == [
        {"action": "wait", "domain": "example.test", "selector": new, "key_type": "rsa", "status": "absent",
         "activates_at": None}]
    # A wrong value is not a go-ahead either.
    publish(fake_dns, created, new, value="v=DKIM1; k=rsa; p=X")
    assert run(key_dir, t + 7200, rotation=True, dns=dns)[1]["actions"]["example.test"][0]["status"] == "mismatch"

    publish(fake_dns, created, new)
    [plan], seen = run(key_dir, t + 3 * 3600, rotation=True, dns=dns)
    assert [a["action"] for a in seen["actions"]["example.test"]] == ["visible", "wait"] and plan.changes
    assert seen["actions"]["example.test"][1]["activates_at"] == t + 3 * 3600 + 2 * DAY
    assert seen["domains"]["example.test"]["active"]["rsa"]["selector"] == old["selector"]

    # Check mode (plan alone) predicts the switch and writes nothing.
    switch = t + 3 * 3600 + 2 * DAY
    before = listing(key_dir)
    [plan], predicted = run(key_dir, switch, rotation=True, dns=dns, check=True)
    assert predicted["activated"] == [f"example.test/{new}"] and listing(key_dir) == before
    assert predicted["diff"]["after"]["example.test"] == {old["selector"]: "retiring", new: "active"}

    [plan], switched = run(key_dir, switch, rotation=True, dns=dns)
    assert switched["activated"] == [f"example.test/{new}"]
    assert switched["domains"]["example.test"]["active"]["rsa"]["selector"] == new
    assert states(key_dir) == {old["selector"]: "retiring", new: "active"}
    assert os.path.exists(old["key_file"])  # still published: verifiers of mail in flight need its record

    [plan], still = run(key_dir, switch + 5 * DAY - 1, rotation=True, dns=dns)
    assert still["actions"]["example.test"] == [] and os.path.exists(old["key_file"])
    [plan], retired = run(key_dir, switch + 5 * DAY, rotation=True, dns=dns)
    assert [a["action"] for a in retired["actions"]["example.test"]] == ["retire"]
    assert not os.path.exists(old["key_file"])
    assert [k["selector"] for k in retired["domains"]["example.test"]["publish"]] == [new]
    assert not run(key_dir, switch + 6 * DAY, rotation=True, dns=dns)[0][0].changes


def test_revocation_publishes_an_empty_key_before_the_record_goes(key_dir, fake_dns):
    req = request(revocation=DAY)
    first = run(key_dir, T0, req=req)[1]
    old = first["domains"]["example.test"]["active"]["rsa"]["selector"]
    created = run(key_dir, T0 + 20 * DAY, req=req, rotation=True, dns=fake_dns.dns())[1]
    [new] = [c.split("/")[1] for c in created["created"]]
    publish(fake_dns, created, new)
    run(key_dir, T0 + 20 * DAY + 1, req=req, rotation=True, dns=fake_dns.dns())
    run(key_dir, T0 + 22 * DAY + 1, req=req, rotation=True, dns=fake_dns.dns())
    revoked = run(key_dir, T0 + 27 * DAY + 1, req=req, rotation=True, dns=fake_dns.dns())[1]
    assert [a["action"] for a in revoked["actions"]["example.test"]] == ["revoke"]
    assert {k["selector"]: k["txt_value"] for k in revoked["domains"]["example.test"]["publish"]}[old] == \
        "v=DKIM1; k=rsa; h=sha256; t=s; p="
    assert not os.path.exists(os.path.join(key_dir, f"example.test.{old}.key"))


def test_unreachable_name_servers_mean_wait_never_go_ahead(key_dir):
    dns = FakeDns(authoritative=())  # the resolver fails: no server to ask
    run(key_dir, T0)
    created = run(key_dir, T0 + 20 * DAY, rotation=True, dns=dns.dns())[1]
    [new] = [c.split("/")[1] for c in created["created"]]
    for now in (T0 + 21 * DAY, T0 + 40 * DAY):
        waiting = run(key_dir, now, rotation=True, dns=dns.dns())[1]
        assert waiting["actions"]["example.test"][0]["status"] == "unreachable" and waiting["activated"] == []
    assert states(key_dir)[new] == "published"


def test_listed_name_servers_are_asked_instead_of_the_authoritative_ones(key_dir):
    asked = []
    dns = keys_.Dns(authoritative_servers=lambda domain: pytest.fail("not asked when servers are listed"),
                    record_status=lambda name, expected, servers: asked.append(list(servers)) or "absent")
    run(key_dir, T0)
    run(key_dir, T0 + 20 * DAY, req=request(nameservers=["192.0.2.1#5353"]), rotation=True, dns=dns)
    assert asked == [["192.0.2.1#5353"]]


def test_clock_behind_the_ring_changes_nothing(key_dir, fake_dns):
    run(key_dir, T0)
    before = listing(key_dir)
    [plan], result = run(key_dir, T0 - DAY, rotation=True, dns=fake_dns.dns())
    assert not plan.changes and result["actions"]["example.test"][0]["action"] == "clock"
    assert listing(key_dir) == before


def test_new_selector_already_published_by_someone_else_is_refused(key_dir, fake_dns):
    run(key_dir, T0)
    fake_dns.records["20261215-mx1._domainkey.example.test"] = ["v=DKIM1; k=rsa; p=SOMEONEELSE"]
    before = listing(key_dir)
    with pytest.raises(KeyRingError, match="the new selector 20261215-mx1 is already published in DNS"):
        run(key_dir, T0 + 20 * DAY, rotation=True, dns=fake_dns.dns())
    assert listing(key_dir) == before
    del fake_dns.records["20261215-mx1._domainkey.example.test"]
    assert run(key_dir, T0 + 20 * DAY, rotation=True, dns=fake_dns.dns())[1]["created"] == [
        "example.test/20261215-mx1"]


def test_size_change_in_the_middle_of_a_rotation_is_refused(key_dir, fake_dns):
    run(key_dir, T0)
    run(key_dir, T0 + 20 * DAY, rotation=True, dns=fake_dns.dns())
    with pytest.raises(KeyRingError, match="a change to 2048 bits must wait until it is active"):
        run(key_dir, T0 + 21 * DAY, req=request(rsa_bits=2048), rotation=True, dns=fake_dns.dns())


def test_rotation_never_makes_a_first_key(key_dir, fake_dns):
    with pytest.raises(KeyRingError, match="site.yml makes the first one"):
        run(key_dir, T0, rotation=True, dns=fake_dns.dns())
    assert os.listdir(key_dir) == []


def test_the_time_of_the_last_check_alone_writes_nothing(key_dir, fake_dns):
    """rotate() records when it last ran; a run that changes nothing else must not rewrite the ring."""
    run(key_dir, T0)
    [plan] = run(key_dir, T0 + DAY, rotation=True, dns=fake_dns.dns(), check=True)[0]
    assert plan.after.get("checked") == T0 + DAY and not plan.changes


def test_a_domain_removed_from_the_site_stops_signing_and_its_keys_go_after_the_grace_period(key_dir):
    run(key_dir, T0, domains=DOMAINS)
    org_key = keys_.key_file(key_dir, "example.org", keys_.load_ring(key_dir, "example.org")["keys"][0]["selector"])
    nothing_answers = FakeDns(authoritative=())  # a removed domain's DNS is never asked

    plans, result = run(key_dir, T0 + DAY, rotation=True, dns=nothing_answers.dns())
    assert [(p.domain, p.removed) for p in plans] == [("example.test", False), ("example.org", True)]
    assert list(result["domains"]) == ["example.test"]  # the signers follow domains: example.org leaves them
    assert result["removed"]["example.org"]["active"] == {}
    assert [a["action"] for a in result["actions"]["example.org"]] == ["deactivate"]
    assert os.path.exists(org_key) and result["removed"]["example.org"]["publish"]  # still published, grace
    assert nothing_answers.questions == []

    result = run(key_dir, T0 + 6 * DAY, rotation=True, dns=nothing_answers.dns())[1]
    assert [a["action"] for a in result["actions"]["example.org"]] == ["retire"]
    assert not os.path.exists(org_key)
    assert result["removed"]["example.org"]["publish"] == [] and result["removed"]["example.org"]["retired"]
    plans = run(key_dir, T0 + 7 * DAY, rotation=True, dns=nothing_answers.dns(), check=True)[0]
    assert not any(p.changes for p in plans)
    # site.yml (no rotation) leaves removed domains alone, and a domain added back gets a new first key.
    assert [p.domain for p in run(key_dir, T0 + 7 * DAY, domains=DOMAINS, check=True)[0]] == DOMAINS


def test_a_retired_key_named_by_the_signers_configuration_keeps_its_file_until_it_is_not(key_dir):
    run(key_dir, T0, domains=DOMAINS)
    ring = keys_.load_ring(key_dir, "example.org")
    org_key = keys_.key_file(key_dir, "example.org", ring["keys"][0]["selector"])
    # The signer config was not replaced (a failed validate, a reload that never came): it still names the key.
    config = f'domain {{ example.org {{ path = "{org_key}"; selector = "{ring["keys"][0]["selector"]}"; }} }}'
    named = dataclasses.replace(request(), in_use=keys_.signer_in_use(key_dir, [config]))
    assert named.in_use == {org_key}
    nothing_answers = FakeDns(authoritative=()).dns()

    run(key_dir, T0 + DAY, req=named, rotation=True, dns=nothing_answers)
    plans = keys_.plan(key_dir, ["example.test"], named, T0 + 6 * DAY, True, nothing_answers)
    plans = [dataclasses.replace(p, after=keys_.apply(p.after, key_dir, 0o640, in_use=named.in_use))
             if p.changes else p for p in plans]
    assert keys_.load_ring(key_dir, "example.org")["keys"][0]["state"] == "retired"
    assert os.path.exists(org_key)
    assert keys_.report(plans, key_dir, named.in_use)["kept"] == [org_key]
    # Still named: nothing more to do, the run changes nothing; once the config no longer names it, it goes.
    assert not any(p.changes for p in keys_.plan(key_dir, ["example.test"], named, T0 + 7 * DAY, True,
                                                 nothing_answers))
    plans, result = run(key_dir, T0 + 7 * DAY, rotation=True, dns=nothing_answers)
    assert [p.domain for p in plans if p.changes] == ["example.org"]
    assert not os.path.exists(org_key) and result["kept"] == []
