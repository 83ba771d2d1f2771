"""The dkim_keys module as Ansible runs it (ad-hoc, on this machine): check mode, idempotence, ownership,
recovery, refusals, and keys that really sign what their published record verifies (dkimpy). These prove the
wiring (arguments, owners, check mode, results); the plan and apply logic itself is tested in-process with an
injected clock in tests/unit/plugins/module_utils/test__dkim_keys.py. Time never passes here by sleeping: the
state files are backdated instead."""

from __future__ import annotations

import grp
import json
import pwd
import stat
import sys
from pathlib import Path

import ad_hoc
import dkim
import pytest

DOMAINS = ["example.test", "example.org"]


def run_module(args: dict, check: bool = False, python: str = sys.executable) -> dict:
    return ad_hoc.run_module("dkim_keys", args, check, python)[0]


@pytest.fixture
def key_dir(tmp_path):
    """Not there yet: the module makes it."""
    return tmp_path / "dkim"


def args_for(key_dir, **extra):
    return {"domains": DOMAINS, "key_dir": str(key_dir), "owner": "nobody", "group": "nogroup", "mode": "0640",
            **extra}


@pytest.fixture
def python_without(tmp_path):
    """An interpreter for the module on which the named top-level packages cannot be imported."""
    def make(*packages: str) -> str:
        hidden = tmp_path / "hidden"
        hidden.mkdir(exist_ok=True)
        for package in packages:
            (hidden / f"{package}.py").write_text(f"raise ImportError('{package} is hidden from this test')\n")
        wrapper = tmp_path / "python"
        wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={hidden} exec {sys.executable} "$@"\n')
        wrapper.chmod(0o755)
        return str(wrapper)
    return make


def test_check_mode_reports_the_keys_it_would_make_and_writes_nothing(key_dir):
    result = run_module(args_for(key_dir), check=True)
    assert result["changed"] is True
    assert sorted(c.split("/")[0] for c in result["created"]) == sorted(DOMAINS)
    assert result["domains"]["example.test"]["publish"][0]["public_key"] is None
    assert not key_dir.exists()


def test_run_creates_keys_owned_by_the_signer_then_changes_nothing(key_dir):
    first = run_module(args_for(key_dir))
    assert first["changed"] is True and "failed" not in first
    for domain in DOMAINS:
        active = first["domains"][domain]["active"]["rsa"]
        key_file = Path(active["key_file"])
        for path in (key_file, key_dir / f"{domain}.json"):
            st = path.stat()
            assert (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)) == \
                ("nobody", "nogroup", 0o640)
        assert "BEGIN PRIVATE KEY" not in json.dumps(first)
    second = run_module(args_for(key_dir))
    assert second["changed"] is False and second["created"] == []
    assert second["domains"] == first["domains"]
    assert run_module(args_for(key_dir), check=True)["changed"] is False


def test_published_record_verifies_what_the_key_signs(key_dir):
    result = run_module(args_for(key_dir, ed25519=True))
    for domain in DOMAINS:
        publish = {k["selector"]: k["txt_value"] for k in result["domains"][domain]["publish"]}
        assert sorted(result["domains"][domain]["active"]) == ["ed25519", "rsa"]
        for key_type, active in result["domains"][domain]["active"].items():
            message = f"From: a@{domain}\r\nTo: b@elsewhere.test\r\nSubject: t\r\n\r\nbody\r\n".encode()
            signature = dkim.sign(message, active["selector"].encode(), domain.encode(),
                                  Path(active["key_file"]).read_bytes().strip(),
                                  signature_algorithm=b"rsa-sha256" if key_type == "rsa" else b"ed25519-sha256")
            record = publish[active["selector"]].encode()
            assert dkim.verify(signature + message, dnsfunc=lambda name, timeout=5, r=record: r)


def test_drifted_mode_is_put_back(key_dir):
    key_file = Path(run_module(args_for(key_dir))["domains"]["example.test"]["active"]["rsa"]["key_file"])
    key_file.chmod(0o644)
    assert run_module(args_for(key_dir))["changed"] is True
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o640


def test_key_files_without_a_state_file_are_refused(key_dir):
    run_module(args_for(key_dir))
    (key_dir / "example.test.json").unlink()
    result = run_module(args_for(key_dir))
    assert result.get("failed") is True
    assert "the key ring state example.test.json is missing" in result["msg"]


def test_another_domains_key_files_do_not_block_a_new_domain(key_dir):
    run_module(dict(args_for(key_dir), domains=["example.test.au", "sub.example.test"]))
    result = run_module(dict(args_for(key_dir), domains=["example.test"]))
    assert result["changed"] is True and "failed" not in result, result.get("msg")
    assert [c.split("/")[0] for c in result["created"]] == ["example.test"]


def test_a_corrupt_state_file_is_refused(key_dir):
    run_module(args_for(key_dir))
    (key_dir / "example.test.json").write_text("{")
    result = run_module(args_for(key_dir))
    assert result.get("failed") is True and "cannot be read as JSON" in result["msg"]


def test_an_interrupted_run_is_completed(key_dir):
    """A run killed after recording the new selector but before writing its key."""
    state = {"version": 1, "domain": "example.test", "keys": [
        {"selector": "20261125", "key_type": "rsa", "bits": 2048, "state": "active", "created": 1,
         "activated": 1, "public_key": None}]}
    key_dir.mkdir()
    (key_dir / "example.test.json").write_text(json.dumps(state))
    result = run_module(args_for(key_dir))
    assert "example.test/20261125" in result["created"]
    assert (key_dir / "example.test.20261125.key").exists()
    assert result["domains"]["example.test"]["publish"][0]["public_key"]


@pytest.mark.parametrize("extra, message", [({"rsa_bits": 512}, "at least 1024 bits"),
                                            ({"owner": "no-such-user"}, "owner or group does not exist"),
                                            ({"mode": "rw"}, "mode is invalid"),
                                            ({"selector_tag": "MX_1"}, "DKIM selector 'MX_1'")])
def test_bad_parameters_fail_before_writing(key_dir, extra, message):
    result = run_module(args_for(key_dir, **extra))
    assert result.get("failed") is True and message in result["msg"]
    assert not key_dir.exists()


@pytest.mark.parametrize("state, hidden, message", [
    ("present", "cryptography", "(cryptography) on"),
    ("rotate", "cryptography", "(cryptography) on"),
    ("rotate", "dns", "(dnspython) on"),
])
def test_a_missing_library_fails_with_its_name_before_anything_changes(key_dir, python_without, state, hidden,
                                                                       message):
    if state == "rotate":
        run_module(args_for(key_dir))
    before = sorted(p.name for p in key_dir.iterdir()) if key_dir.exists() else None
    result = run_module(args_for(key_dir, state=state), python=python_without(hidden))
    assert result.get("failed") is True and message in result["msg"], result
    assert (sorted(p.name for p in key_dir.iterdir()) if key_dir.exists() else None) == before


def test_check_mode_before_the_packages_are_installed_says_what_it_would_make(key_dir, python_without):
    """site.yml --check on a new host: python3-cryptography and the signer's user come with packages that
    check mode does not install."""
    result = run_module(args_for(key_dir, owner="no-such-user", group="no-such-group"), check=True,
                        python=python_without("cryptography"))
    assert "failed" not in result, result
    assert result["changed"] is True and sorted(c.split("/")[0] for c in result["created"]) == sorted(DOMAINS)
    assert not key_dir.exists()


def test_query_needs_neither_cryptography_nor_dnspython(key_dir, python_without):
    made = run_module(args_for(key_dir))
    queried = run_module(args_for(key_dir, state="query"), python=python_without("cryptography", "dns"))
    assert "failed" not in queried and queried["domains"] == made["domains"]


def test_key_dir_is_made_for_the_signer_group_only(key_dir):
    run_module(args_for(key_dir))
    info = key_dir.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, grp.getgrgid(info.st_gid).gr_name) == (0o750, 0, "nogroup")


def test_selector_tag_names_the_host(key_dir):
    result = run_module(args_for(key_dir, selector_tag="mx1", ed25519=True))
    active = result["domains"]["example.test"]["active"]
    assert [active["rsa"]["selector"][8:], active["ed25519"]["selector"][8:]] == ["-mx1", "-mx1-ed25519"]


def test_query_reports_the_rings_and_changes_nothing(key_dir):
    made = run_module(args_for(key_dir, ed25519=True))
    key_dir.chmod(0o700)
    queried = run_module({"domains": DOMAINS + ["new.test"], "key_dir": str(key_dir), "state": "query",
                          "rsa_bits": 4096})
    assert queried["changed"] is False
    assert queried["domains"]["example.test"] == made["domains"]["example.test"]
    assert queried["domains"]["new.test"] == {"active": {}, "publish": [], "retired": []}
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700 and not (key_dir / "new.test.json").exists()


# Rotation with seconds-long durations against a DNS server on 127.0.0.1 (tests/unit/conftest.py).
FAST = {"interval": 20, "lead": 2, "grace": 3, "record_ttl": 1, "queue_lifetime": 2, "revocation": 0}


def rotate_args(key_dir, dns_server, **extra):
    rotation = {**FAST, "nameservers": [f"127.0.0.1#{dns_server.port}"], **extra.pop("rotation", {})}
    return args_for(key_dir, **{"domains": ["example.test"], "state": "rotate", "selector_tag": "mx1",
                                "rotation": rotation, **extra})


def ring_file(key_dir) -> dict:
    return json.loads((key_dir / "example.test.json").read_text())


TIMESTAMPS = ("created", "activated", "visible_since", "deactivated", "revoked", "retired")


def backdate(key_dir, seconds: int) -> None:
    """As if `seconds` had passed since every step the ring recorded (instead of sleeping through them)."""
    ring = ring_file(key_dir)
    for key in ring["keys"]:
        for name in TIMESTAMPS:
            if key.get(name) is not None:
                key[name] -= seconds
    if ring.get("checked") is not None:
        ring["checked"] -= seconds
    (key_dir / "example.test.json").write_text(json.dumps(ring))


def test_rotation_through_dns_from_creation_to_retirement(key_dir, dns_server):
    """state=rotate end to end as Ansible runs it, against a DNS server on 127.0.0.1: the dnspython checks,
    check mode and the results the roles read (created, actions, activated)."""
    first = run_module(args_for(key_dir, domains=["example.test"], selector_tag="mx1"))
    old = first["domains"]["example.test"]["active"]["rsa"]
    publish = first["domains"]["example.test"]["publish"][0]
    dns_server.records[f"{publish['selector']}._domainkey.example.test"] = [publish["txt_value"]]
    assert not run_module(rotate_args(key_dir, dns_server))["changed"]  # nothing due yet
    backdate(key_dir, 20)

    created = run_module(rotate_args(key_dir, dns_server))
    [(action, new)] = [(a["action"], a["selector"]) for a in created["actions"]["example.test"]]
    assert action == "create" and created["changed"] and created["created"] == [f"example.test/{new}"]
    assert (key_dir / f"example.test.{new}.key").exists()
    record = next(k for k in created["domains"]["example.test"]["publish"] if k["selector"] == new)

    # Not in DNS yet: nothing changes.
    waiting = run_module(rotate_args(key_dir, dns_server))
    assert not waiting["changed"] and waiting["actions"]["example.test"][0]["status"] == "absent"

    dns_server.records[f"{new}._domainkey.example.test"] = [record["txt_value"]]
    seen = run_module(rotate_args(key_dir, dns_server))
    assert [a["action"] for a in seen["actions"]["example.test"]] == ["visible", "wait"] and seen["changed"]
    assert seen["domains"]["example.test"]["active"]["rsa"]["selector"] == old["selector"]
    backdate(key_dir, 2)  # the lead time

    before = (key_dir / "example.test.json").read_bytes()
    predicted = run_module(rotate_args(key_dir, dns_server), check=True)
    assert predicted["activated"] == [f"example.test/{new}"] and (key_dir / "example.test.json").read_bytes() == before
    assert predicted["diff"]["after"]["example.test"] == {old["selector"]: "retiring", new: "active"}

    switched = run_module(rotate_args(key_dir, dns_server))
    assert switched["activated"] == [f"example.test/{new}"]
    assert switched["domains"]["example.test"]["active"]["rsa"]["selector"] == new
    states = {k["selector"]: k["state"] for k in ring_file(key_dir)["keys"]}
    assert states == {old["selector"]: "retiring", new: "active"}
    assert Path(old["key_file"]).exists()  # still published: verifiers of mail in flight need its record
    backdate(key_dir, 3)  # the grace period

    retired = run_module(rotate_args(key_dir, dns_server))
    assert [a["action"] for a in retired["actions"]["example.test"]] == ["retire"]
    assert not Path(old["key_file"]).exists()
    assert [k["selector"] for k in retired["domains"]["example.test"]["publish"]] == [new]
    assert retired["domains"]["example.test"]["retired"] == [old["selector"]]
    assert not run_module(rotate_args(key_dir, dns_server))["changed"]


@pytest.mark.parametrize("extra, message", [
    ({"rotation": {"grace": 1}}, "grace (1 s) must be longer than the queue lifetime"),
    ({"rotation": {"interval": 0}}, "interval is 0"),
    ({"rotation": {"lead": "soon"}}, "duration 'soon' is not seconds"),
    ({"rotation": {"grace": 1}, "state": "present"}, "grace (1 s) must be longer than the queue lifetime"),
])
def test_contradictory_durations_fail_before_anything_changes(key_dir, dns_server, extra, message):
    run_module(args_for(key_dir, domains=["example.test"]))
    before = sorted((p.name, p.read_bytes()) for p in key_dir.iterdir())
    result = run_module(rotate_args(key_dir, dns_server, **extra))
    assert result.get("failed") is True and message in result["msg"]
    assert sorted((p.name, p.read_bytes()) for p in key_dir.iterdir()) == before


def test_size_change_in_the_middle_of_a_rotation_is_refused(key_dir, dns_server):
    run_module(args_for(key_dir, domains=["example.test"]))
    backdate(key_dir, 20)
    run_module(rotate_args(key_dir, dns_server))
    before = sorted((p.name, p.read_bytes()) for p in key_dir.iterdir())
    result = run_module(rotate_args(key_dir, dns_server, rsa_bits=3072))
    assert result.get("failed") is True and "a change to 3072 bits must wait until it is active" in result["msg"]
    assert sorted((p.name, p.read_bytes()) for p in key_dir.iterdir()) == before


def test_rotation_never_makes_a_first_key(key_dir, dns_server):
    result = run_module(rotate_args(key_dir, dns_server))
    assert result.get("failed") is True and "site.yml makes the first one" in result["msg"]


def test_new_selector_already_published_by_someone_else_is_refused(key_dir, dns_server):
    run_module(args_for(key_dir, domains=["example.test"], selector_tag="mx1"))
    backdate(key_dir, 20)
    [planned] = run_module(rotate_args(key_dir, dns_server), check=True)["created"]
    selector = planned.split("/")[1]
    dns_server.records[f"{selector}._domainkey.example.test"] = ["v=DKIM1; k=rsa; p=SOMEONEELSE"]
    before = sorted((p.name, p.read_bytes()) for p in key_dir.iterdir())
    result = run_module(rotate_args(key_dir, dns_server))
    assert result.get("failed") is True, result
    assert (f"example.test: the new selector {selector} is already published in DNS" in result["msg"]
            and "nothing changed" in result["msg"])
    assert sorted((p.name, p.read_bytes()) for p in key_dir.iterdir()) == before
    # Once that record is gone the rotation goes ahead.
    del dns_server.records[f"{selector}._domainkey.example.test"]
    assert run_module(rotate_args(key_dir, dns_server))["created"] == [planned]


def test_rotate_hands_a_removed_domain_back_as_removed_and_refuses_an_unreadable_signer_config(key_dir, tmp_path):
    run_module(args_for(key_dir))
    # A query names the removed domain's ring too, keys and all: the DNS publisher keeps its keys published.
    queried = run_module(args_for(key_dir, domains=DOMAINS[1:], state="query"))
    assert list(queried["domains"]) == DOMAINS[1:] and list(queried["removed"]) == DOMAINS[:1]
    assert queried["removed"][DOMAINS[0]]["publish"] and queried["changed"] is False
    config = tmp_path / "dkim_signing.conf"
    config.write_text(f'path = "{key_dir}/{DOMAINS[0]}.x.key";\n')
    result = run_module(args_for(key_dir, domains=DOMAINS[1:], state="rotate", selector_tag="",
                                 signer_configs=[str(config), str(tmp_path / "not-installed.conf")]))
    assert list(result["domains"]) == DOMAINS[1:] and list(result["removed"]) == DOMAINS[:1]
    assert [a["action"] for a in result["actions"][DOMAINS[0]]] == ["deactivate"]
    assert result["removed"][DOMAINS[0]]["active"] == {} and result["kept"] == []
    failed = run_module(args_for(key_dir, state="rotate", signer_configs=[str(tmp_path)]))
    assert failed["failed"] and f"signer_configs: {tmp_path} cannot be read" in failed["msg"]
