"""Mail that leaves: submissions reach the outside world (through the scenario's DNS), and forwarding
through an alias rewrites the envelope sender with SRS so the outside world's SPF check can pass."""

import re

from conftest import deliver_inbound, new_message, outside_message, submit


def test_submission_to_the_outside_world_is_relayed(host_vars, address, tls):
    msg = new_message("alice@one.test", "someone@outside.test")
    submit(address, 587, tls, "alice@one.test", host_vars["test_passwords"]["alice@one.test"], msg)
    stored = outside_message(msg["Message-ID"])
    assert re.search(r"^Return-Path: <alice@one\.test>$", stored, re.M)


def test_forwarding_to_the_outside_world_uses_srs(host_vars, address):
    forward = next(a for a, targets in host_vars["mail_aliases"].items() if "someone@outside.test" in targets)
    msg = new_message("sender@elsewhere.test", forward)
    deliver_inbound(address, msg, [forward])
    stored = outside_message(msg["Message-ID"])
    return_path = re.search(r"^Return-Path: <([^>]*)>$", stored, re.M)[1]
    assert return_path.startswith("SRS0=") and "elsewhere.test" in return_path
    # The forwarding domain vouches for the rewritten sender (SPF of two.test, not of elsewhere.test).
    assert return_path.split("@")[1] == forward.split("@")[1]
