"""playbooks/rotate_keys.yml as a timer runs it: nothing due changes nothing; a due key is created, waits until
its record is visible on the scenario's DNS server (published late, as an operator would), then signs, and
mail leaves signed with it (dkimpy). Durations are seconds here; the ring's active key is backdated so that it
is due."""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import (
    key_ring,
    new_message,
    outside_message,
    run_playbook,
    submit_from_outside,
    verified,
)

RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
DOMAIN = "one.test"


@pytest.fixture(scope="module")
def fast_schedule(tmp_path_factory, host_vars):
    """Extra variables: a schedule in seconds, checked on the scenario's DNS server only."""
    path = tmp_path_factory.mktemp("rotation") / "schedule.json"
    path.write_text(json.dumps({"mail_dkim_rotation": {
        "interval": "1h", "lead": 3, "grace": 6, "record_ttl": 1, "queue_lifetime": 5,
        "nameservers": [host_vars["test_dns_server"]]}}))
    return path


def rotate(*args: str) -> tuple[dict[str, int], str]:
    output = run_playbook("playbooks/rotate_keys.yml", *args)
    return {m[0]: int(m[1]) for m in RECAP.findall(output)}, output


def rsa_keys(host) -> dict[str, str]:
    return {k["selector"]: k["state"] for k in key_ring(host, DOMAIN)["keys"] if k["key_type"] == "rsa"}


def test_nothing_due_changes_nothing(fast_schedule):
    changed, output = rotate("-e", f"@{fast_schedule}")
    assert changed and all(n == 0 for n in changed.values()), changed
    assert f"{DOMAIN}: signs with" in output


def test_a_due_key_waits_for_its_record_then_signs(host, host_vars, address, fast_schedule, dnsfunc, tmp_path):
    old = next(s for s, state in rsa_keys(host).items() if state == "active")
    # The active key has signed for more than the interval.
    host.run_test("python3 -c 'import json,sys; p=sys.argv[1]; r=json.load(open(p)); "
                  "[k.update(created=k[\"created\"]-7200, activated=k[\"activated\"]-7200) for k in r[\"keys\"]]; "
                  f"json.dump(r,open(p,\"w\"))' /var/lib/opendove/dkim/{DOMAIN}.json")
    _, output = rotate("--limit", host.backend.host, "-e", f"@{fast_schedule}")
    [new] = [s for s, state in rsa_keys(host).items() if state == "published"]
    assert f"{new} (rsa) is new: publish its record" in output

    # Not published yet: however often it runs, the new key does not sign.
    _, output = rotate("--limit", host.backend.host, "-e", f"@{fast_schedule}")
    assert f"{new} (rsa) waits for its record in DNS (absent)" in output
    assert rsa_keys(host)[new] == "published"

    # The operator publishes what dns_records.yml writes; the next runs see it, wait the lead time, switch.
    records = tmp_path / "records"
    run_playbook("playbooks/dns_records.yml", "-e", f"dns_records_dir={records}")
    run_playbook("molecule/shared/publish_dns.yml", "-e", f"test_dns_records_dir={records}")
    _, output = rotate("--limit", host.backend.host, "-e", f"@{fast_schedule}")
    assert f"{new} (rsa) is visible in DNS" in output and rsa_keys(host)[new] == "published"
    time.sleep(3)
    _, output = rotate("--limit", host.backend.host, "-e", f"@{fast_schedule}")
    assert f"{new} (rsa) signs now; {old} stays published" in output
    assert (rsa_keys(host)[new], rsa_keys(host)[old]) == ("active", "retiring")

    msg = new_message(f"alice@{DOMAIN}", "rotated@outside.test")
    assert submit_from_outside(address, f"alice@{DOMAIN}", host_vars["test_passwords"][f"alice@{DOMAIN}"],
                               msg)["code"] == 250
    signed = verified(outside_message(msg["Message-ID"]).encode(), dnsfunc)
    assert (DOMAIN, new, "rsa-sha256") in signed and not any(s == old for _, s, _ in signed)

    # After the grace period the old key is retired: its private key goes, its record leaves the output.
    time.sleep(6)
    _, output = rotate("--limit", host.backend.host, "-e", f"@{fast_schedule}")
    assert f"{old} (rsa) is retired" in output and rsa_keys(host)[old] == "retired"
    assert not host.file(f"/var/lib/opendove/dkim/{DOMAIN}.{old}.key").exists
