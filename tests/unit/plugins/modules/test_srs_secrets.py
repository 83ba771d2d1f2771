"""The srs_secrets module as Ansible runs it (ad-hoc, on this machine): its arguments, its results, check mode,
its failures, and the hosts' files never coming back in its output. The plan itself is tested in-process in
tests/unit/plugins/module_utils/test__srs.py."""

from __future__ import annotations

import base64
import json

import ad_hoc

STATE_FILE = "/var/lib/opendove/srs.json"
CONF = "/etc/smtpd/srs.conf"
# Made in November 2023: a run now is past it (a state from the future would stop every step).
HELD = {"current": {"secret": "a" * 48, "created": 1_700_000_000}, "backup": None}


def run_module(args: dict, check: bool = False) -> tuple[dict, str]:
    return ad_hoc.run_module("srs_secrets", args, check)


def read(host: str, path: str, content: str | None = None, msg: str = "file not found: x") -> dict:
    if content is None:
        return {"item": [host, path], "msg": msg}
    return {"item": [host, path], "content": base64.b64encode(content.encode()).decode()}


def test_first_run_makes_one_secret_and_changes_nothing_itself():
    reads = [read(host, path) for host in ("mx1", "mx2") for path in (STATE_FILE, CONF)]
    result = run_module({"reads": reads, "play_hosts": ["mx1", "mx2"]})[0]
    assert result["changed"] is False and "failed" not in result, result.get("msg")
    assert len(result["state"]["current"]["secret"]) == 48 and result["state"]["backup"] is None
    assert result["actions"] == [{"action": "create"}]
    assert result["summary"][0] == "SRS: a new secret is shared by every MX host"
    assert result["state"]["current"]["secret"] not in json.dumps(result["summary"])


def test_check_mode_decides_the_same_way():
    reads = [read("mx1", STATE_FILE, json.dumps(HELD)), read("mx1", CONF, f"srs key {'a' * 48}\n")]
    args = {"reads": reads, "play_hosts": ["mx1"], "rotate": True, "rotation": {"interval": "5d", "grace": "4d"}}
    predicted = run_module(args, check=True)[0]
    assert predicted["changed"] is False and predicted["actions"][0]["action"] == "rotate"
    assert predicted["state"]["backup"]["secret"] == "a" * 48 != predicted["state"]["current"]["secret"]


def test_the_hosts_files_never_come_back_in_the_output():
    conf = f"srs key {'b' * 48}\n"
    reads = [read("mx1", STATE_FILE, json.dumps(HELD)), read("mx1", CONF, conf)]
    result, output = run_module({"reads": reads, "play_hosts": ["mx1"]})
    assert result["state"] == HELD and result["actions"] == []
    for content in (reads[0]["content"], reads[1]["content"]):
        assert content not in output
    assert "b" * 48 not in output
    assert result["invocation"]["module_args"]["reads"][0]["content"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_a_host_left_behind_fails_with_its_name_and_no_secret():
    reads = [read(host, STATE_FILE, json.dumps(HELD)) for host in ("mx1", "mx2")]
    result, output = run_module({"reads": reads, "play_hosts": ["mx1"], "rotate": True,
                                 "rotation": {"interval": "5d", "grace": "4d"}})
    assert result.get("failed") is True
    assert result["msg"] == ("SRS secrets are shared by every MX host, and mx2 (not in this run) would keep others: "
                             "run without --limit")
    assert "state" not in result and "a" * 48 not in output


def test_an_unknown_schedule_key_is_refused():
    result = run_module({"reads": [], "play_hosts": [], "rotation": {"drop": "1d"}})[0]
    assert result.get("failed") is True and "rotation.drop" in result["msg"]


def test_a_contradictory_schedule_is_refused():
    result = run_module({"reads": [], "play_hosts": [], "rotation": {"grace": "2d"}, "srs_ttl": "4d"})[0]
    assert result.get("failed") is True
    assert "grace (172800 s) is shorter than the SRS address lifetime" in result["msg"]
