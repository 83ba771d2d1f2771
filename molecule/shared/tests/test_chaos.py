"""kill -9 under load, smaller than `make chaos`: while 10 clients submit messages (to a local user and to the
outside world), smtpd, Dovecot and the DKIM signer are killed in turn; every accepted message must arrive,
every copy that leaves must carry a valid DKIM signature, and no local user may get one twice (scripts/chaos.py)."""

from __future__ import annotations

import sys

import pytest
from conftest import PROJECT, client_tls, outside_host

sys.path.insert(0, str(PROJECT / "scripts"))
import chaos  # noqa: E402  (a script of the project, not a package)

MESSAGES = 40


@pytest.fixture(scope="module")
def chaos_run(host, host_vars, published_records):
    """One run per mail host, once the DKIM records are in the scenario's DNS (published_records)."""
    target = chaos.Target(host.backend.host, next(a for a in host.interface("eth0").addresses if ":" not in a),
                          outside_host().backend.host, host_vars["test_passwords"], host_vars["test_dns_server"],
                          client_tls(), "rspamd" if host_vars["mail_dkim_signer"] == "rspamd" else "dkimproxy-out")
    figures, counts = chaos.run(target, messages=MESSAGES, clients=10, max_per_session=5, seed=12)
    report = chaos.report(target, figures, counts)
    # Kept whatever the outcome (an expected failure shows only its reason): the figures and each duplicate's
    # queue ids, for the CI log's reader.
    (PROJECT / ".cache" / f"chaos-{target.container}.txt").write_text(report + "\n")
    return figures, counts, report


def test_every_accepted_message_arrives_signed_after_kill_9(chaos_run):
    figures, counts, report = chaos_run
    assert figures.accepted >= MESSAGES // 2, report
    assert counts["local"]["lost"] == 0 and counts["outside"]["lost"] == 0, report
    assert figures.unsigned == [], report


def test_no_message_reaches_a_local_user_twice_after_kill_9(chaos_run):
    counts, report = chaos_run[1:]
    assert counts["local"]["duplicated"] == 0, report


@pytest.mark.xfail(reason="SMTP's own window (RFC 1047): smtpd killed after it sent a message's end to the next hop "
                          "but before it took the message off its queue sends it again (8 of 10 runs of 200 "
                          "messages through the rspamd scenario's relayhost; docs/operations.md)", strict=False)
def test_no_message_reaches_the_outside_world_twice_after_kill_9(chaos_run):
    counts, report = chaos_run[1:]
    assert counts["outside"]["duplicated"] == 0, report
