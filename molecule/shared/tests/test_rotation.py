"""playbooks/rotate_keys.yml as a timer runs it, on two MX hosts of the same domains (scenario pair:
Debian 13 signing with Rspamd, Debian 12 with dkimproxy.out), before the scenario's other tests (conftest.py).

DKIM: mail sent before, during and after a full rotation reaches the outside world and every signature
verifies with dkimpy against what the scenario's DNS server serves at that moment; the operator publishes
late, and a new selector never signs before its record is published and the lead time has passed. Mail
submitted while the signers switch keys (Rspamd reloads, dkimproxy re-executes) is accepted and leaves signed.
Durations are seconds here; the rings' active keys are backdated so that they are due.

SRS: both hosts hold the same secrets; after a rotation a bounce to an address made with the old secret is
still accepted by either host (backup slot), and refused once the backup is dropped."""

from __future__ import annotations

import json
import re
import smtplib
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    DELIVERY_TIMEOUT,
    deliver_inbound,
    host_address,
    key_ring,
    mail_hosts,
    new_message,
    outside_message,
    recap_of,
    run_playbook,
    submit,
    submit_from_outside,
    verified,
)

pytestmark = pytest.mark.rotation

SCHEDULE = {"interval": "1h", "lead": 3, "grace": 6, "record_ttl": 1, "queue_lifetime": 5}
SENDERS = {"one.test": "alice@one.test", "two.test": "bob@two.test"}
KEY_DIR = "/var/lib/opendove/dkim"
SRS_STATE = "/var/lib/opendove/srs.json"
BURST_LIMIT = 40  # messages submitted while the signers switch keys, at most


@pytest.fixture(scope="module")
def hosts():
    return {host.backend.host: host for host in mail_hosts()}


@pytest.fixture(scope="module")
def site(hosts):
    return next(iter(hosts.values())).ansible.get_variables()


@pytest.fixture(scope="module")
def schedule_file(tmp_path_factory, site):
    """Extra variables: a DKIM schedule in seconds, checked on the scenario's DNS server only."""
    path = tmp_path_factory.mktemp("rotation") / "schedule.json"
    path.write_text(json.dumps({"mail_dkim_rotation": {**SCHEDULE, "nameservers": [site["test_dns_server"]]}}))
    return path


def rotate(schedule_file: Path, *args: str) -> tuple[dict[str, int], str]:
    """One run of rotate_keys.yml on every mail host: changed tasks per host, and the output."""
    output = run_playbook("playbooks/rotate_keys.yml", "-e", f"@{schedule_file}", *args)
    return {host: counts[0] for host, counts in recap_of(output).items()}, output


def publish(directory: Path) -> set[tuple[str, str]]:
    """The operator's step: publish what dns_records.yml writes on the scenario's DNS server; the (domain,
    selector) of every DKIM record it holds from now on."""
    run_playbook("playbooks/dns_records.yml", "-e", f"dns_records_dir={directory}")
    run_playbook("molecule/shared/publish_dns.yml", "-e", f"test_dns_records_dir={directory}")
    return {(zone.stem, name) for zone in directory.glob("*.zone")
            for name in re.findall(r"^([^.\s]+)\._domainkey\.\S+\s.*\sTXT\s", zone.read_text(), re.M)}


def ring_states(hosts) -> dict[tuple[str, str, str], dict[str, str]]:
    """(host, domain, key type) -> {selector: state}."""
    found: dict = {}
    for name, host in hosts.items():
        for domain in SENDERS:
            for key in key_ring(host, domain)["keys"]:
                found.setdefault((name, domain, key["key_type"]), {})[key["selector"]] = key["state"]
    return found


def in_state(states: dict, state: str) -> dict[tuple[str, str, str], str]:
    found = {where: [s for s, st in selectors.items() if st == state] for where, selectors in states.items()}
    return {where: selectors[0] for where, selectors in found.items() if selectors}


def signed_with(raw: str, domain: str, published: set, dnsfunc) -> dict[str, str]:
    """Verify every signature (dkimpy, the scenario's DNS server as it is now): {algorithm: selector}."""
    signed = verified(raw.encode(), dnsfunc)
    assert signed and {d for d, s, a in signed} == {domain}, signed
    assert {(d, s) for d, s, a in signed} <= published, (signed, published)
    return {a.split("-")[0]: s for d, s, a in signed}


def mail_round(hosts, site, published, dnsfunc) -> dict[tuple[str, str, str], str]:
    """Each host sends for each domain (submitted from the outside world's container): (host, domain, key
    type) -> the selector that signed, every signature verified."""
    sent = []
    for name, host in hosts.items():
        for domain, sender in SENDERS.items():
            msg = new_message(sender, "rotation@outside.test")
            answer = submit_from_outside(host_address(host), sender, site["test_passwords"][sender], msg)
            assert answer["code"] == 250, (name, answer)
            sent.append((name, domain, msg["Message-ID"]))
    used = {}
    for name, domain, message_id in sent:
        for algorithm, selector in signed_with(outside_message(message_id), domain, published, dnsfunc).items():
            used[(name, domain, algorithm)] = selector
    return used


def backdate(host, path: str, script: str) -> None:
    """Rewrite a state file's times as if the rotation's durations had passed."""
    host.run_test(f"python3 -c 'import json,sys; p=sys.argv[1]; s=json.load(open(p)); {script}; "
                  f"json.dump(s,open(p,\"w\"))' {path}")


def test_nothing_due_changes_nothing(schedule_file, hosts):
    changed, output = rotate(schedule_file)
    assert set(changed) >= set(hosts) and all(n == 0 for n in changed.values()), changed
    for domain in SENDERS:
        assert f"{domain}: signs with" in output
    assert "SRS: the secret of" in output


def test_full_dkim_rotation_never_fails_a_signature(schedule_file, hosts, site, dnsfunc, tmp_path, tls):
    published = publish(tmp_path / "before")
    before = mail_round(hosts, site, published, dnsfunc)
    assert before == in_state(ring_states(hosts), "active")
    # Each host its own keys: Rspamd signs with RSA and Ed25519, dkimproxy with RSA.
    signers = {(name, key_type) for name, host in hosts.items()
               for key_type in (("rsa", "ed25519") if host.ansible.get_variables()["mail_dkim_signer"] == "rspamd"
                                else ("rsa",))}
    assert len(signers) == 3
    assert {(name, key_type) for name, domain, key_type in before} == signers

    # Every active key has signed for more than the interval: the next run makes successors.
    for host in hosts.values():
        for domain in SENDERS:
            backdate(host, f"{KEY_DIR}/{domain}.json", '[k.update(created=k["created"]-7200, '
                     'activated=k["activated"]-7200) for k in s["keys"] if k["state"]=="active"]')
    output = rotate(schedule_file)[1]
    new = in_state(ring_states(hosts), "published")
    assert set(new) == set(before) and not set(new.values()) & set(before.values())
    for (name, domain, key_type), selector in new.items():
        assert f"{domain}: {selector} ({key_type}) is new: publish its record" in output

    # Not published yet: however often it runs, no new key signs.
    output = rotate(schedule_file)[1]
    assert all(f"{s} ({t}) waits for its record in DNS (absent)" in output for (n, d, t), s in new.items())
    assert mail_round(hosts, site, published, dnsfunc) == before

    # Published late; visible now, but not yet for the lead time: the old keys still sign.
    published = publish(tmp_path / "during")
    assert {(d, s) for (n, d, t), s in new.items()} <= published
    output = rotate(schedule_file)[1]
    assert all(f"{s} ({t}) is visible in DNS" in output for (n, d, t), s in new.items())
    assert mail_round(hosts, site, published, dnsfunc) == before

    # After the lead time the next run switches every signer; --check says so and changes nothing.
    time.sleep(SCHEDULE["lead"])
    rings = ring_states(hosts)
    predicted = rotate(schedule_file, "--check")[1]
    assert all(f"{d}: {s} ({t}) signs now" in predicted for (n, d, t), s in new.items())
    assert ring_states(hosts) == rings
    # The switch itself, while mail keeps being submitted.
    addresses = [host_address(host) for host in hosts.values()]
    burst, answers, done = [], [], threading.Event()

    def submit_during_switch():
        while len(burst) < BURST_LIMIT and not (done.is_set() and len(burst) >= 2 * len(addresses)):
            address = addresses[len(burst) % len(addresses)]
            domain = list(SENDERS)[len(burst) // len(addresses) % len(SENDERS)]
            msg = new_message(SENDERS[domain], "switch@outside.test")
            try:
                submit(address, 587, tls, SENDERS[domain], site["test_passwords"][SENDERS[domain]], msg)
                answers.append(250)
            except smtplib.SMTPException as exc:
                answers.append(str(exc))
            burst.append((domain, msg["Message-ID"]))

    sender = threading.Thread(target=submit_during_switch)
    sender.start()
    try:
        output = rotate(schedule_file)[1]
    finally:
        done.set()
        sender.join(timeout=300)
    assert answers == [250] * len(burst), answers
    for (name, domain, key_type), selector in new.items():
        assert f"{domain}: {selector} ({key_type}) signs now" in output
    for domain, message_id in burst:
        signed_with(outside_message(message_id, timeout=2 * DELIVERY_TIMEOUT), domain, published, dnsfunc)

    assert mail_round(hosts, site, published, dnsfunc) == new
    assert in_state(ring_states(hosts), "retiring") == before

    # After the grace period the old keys are retired: private keys deleted, records out of the output.
    time.sleep(SCHEDULE["grace"])
    output = rotate(schedule_file)[1]
    assert in_state(ring_states(hosts), "retired") == before
    for (name, domain, key_type), selector in before.items():
        assert not hosts[name].file(f"{KEY_DIR}/{domain}.{selector}.key").exists
    published = publish(tmp_path / "after")
    assert not {(d, s) for (n, d, t), s in before.items()} & published
    assert mail_round(hosts, site, published, dnsfunc) == new
    for host in hosts.values():
        assert host.check_output("smtpctl show queue") == ""


def bounce(address: str, recipient: str) -> int:
    """The answer to RCPT TO of a bounce (MAIL FROM:<>) on port 25, as a remote MTA would send it."""
    with smtplib.SMTP(address, 25, timeout=20) as client:
        client.ehlo("mx.outside.test")
        client.mail("")
        code = client.rcpt(recipient)[0]
        client.rset()
    return code


def srs_address(site, address: str) -> str:
    """A message forwarded to the outside world through the alias of a domain without a catch-all: its SRS
    envelope sender. (OpenSMTPD treats an address that fails the SRS check as a plain local one, so a
    catch-all would take every bounce and hide the refusal.)"""
    plain = {d["name"] for d in site["mail_domains"] if not d.get("catchall")}
    forward = next(a for a, targets in site["mail_aliases"].items()
                   if "someone@outside.test" in targets and a.split("@")[1] in plain)
    msg = new_message("sender@elsewhere.test", forward)
    deliver_inbound(address, msg, [forward])
    return re.search(r"^Return-Path: <(SRS0=[^>]*)>$", outside_message(msg["Message-ID"]), re.M)[1]


def srs_states(hosts) -> list[dict]:
    return [json.loads(host.file(SRS_STATE).content_string) for host in hosts.values()]


def smtpd_pids(hosts) -> list[str]:
    return [host.check_output("systemctl show -P MainPID opensmtpd") for host in hosts.values()]


def test_srs_secrets_are_shared_and_rotated(schedule_file, hosts, site):
    states = srs_states(hosts)
    assert states[0] == states[1] and states[0]["backup"] is None
    for host in hosts.values():
        state_file, conf = host.file(SRS_STATE), host.file("/etc/smtpd/srs.conf")
        assert (state_file.user, state_file.group, state_file.mode) == ("root", "root", 0o600)
        assert conf.content_string == f"srs key {states[0]['current']['secret']}\n"
    addresses = [host_address(host) for host in hosts.values()]
    old = srs_address(site, addresses[0])
    # A bounce may come back to either MX: both hold the secret that made the address.
    assert [bounce(address, old) for address in addresses] == [250, 250]

    # The current secret has signed for more than a year: the next run rotates it on both hosts.
    for host in hosts.values():
        backdate(host, SRS_STATE, 's["current"]["created"]-=366*86400')
    pids = smtpd_pids(hosts)
    predicted = rotate(schedule_file, "--check")[1]
    assert "SRS: rotated" in predicted
    unchanged = [(states[0]["current"]["secret"], None)] * 2
    assert [(s["current"]["secret"], s["backup"]) for s in srs_states(hosts)] == unchanged
    output = rotate(schedule_file)[1]
    rotated = srs_states(hosts)
    assert rotated[0] == rotated[1] and rotated[0]["backup"]["secret"] == states[0]["current"]["secret"]
    assert "SRS: rotated; the previous secret validates bounces until" in output
    assert all(after != before for after, before in zip(smtpd_pids(hosts), pids))
    new = srs_address(site, addresses[1])
    assert new != old
    assert [bounce(address, old) for address in addresses] == [250, 250]
    assert [bounce(address, new) for address in addresses] == [250, 250]

    # A month later the backup is dropped: the old address is refused, the new one still accepted.
    for host in hosts.values():
        backdate(host, SRS_STATE, 's["backup"]["replaced"]-=31*86400')
    dropped = rotate(schedule_file)[1]
    assert "SRS: the backup secret is dropped" in dropped
    assert all(state["backup"] is None for state in srs_states(hosts))
    assert [bounce(address, old) // 100 for address in addresses] == [5, 5]
    assert [bounce(address, new) for address in addresses] == [250, 250]
    # The secrets never appear in what the runs print.
    for secret in (states[0]["current"]["secret"], rotated[0]["current"]["secret"]):
        assert secret not in output and secret not in dropped
