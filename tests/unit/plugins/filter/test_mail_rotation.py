"""The rotation filters: schedule validation for site.yml and the summary rotate_keys.yml prints (the SRS plan
is the srs_secrets module's: tests/unit/plugins/module_utils/test__srs.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.opendove.mailserver.plugins.filter.mail_rotation import FilterModule

FILTERS = FilterModule().filters()
ROOT = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize("rotation, message", [
    ({}, None), (None, None), ({"interval": "90d", "nameservers": ["192.0.2.53"]}, None),
    ({"grace": "2d"}, "mail_dkim_rotation: grace (172800 s) must be longer than the queue lifetime"),
    ({"lead": "30m"}, "must be longer than the record TTL"),
    ({"interval": "0"}, "interval is 0"),
    ({"interval": "six months"}, "duration 'six months' is not seconds"),
    ({"leed": "3d"}, "unknown keys leed"),
])
def test_rotation_errors(rotation, message):
    errors = FILTERS["mail_dkim_rotation_errors"](rotation)
    assert (errors == []) if message is None else any(message in e for e in errors), errors


def test_summary_says_what_to_publish_and_when():
    result = {"domains": {"a.test": {"active": {"rsa": {"selector": "s1"}}}, "b.test": {"active": {}}},
              "actions": {"a.test": [
                  {"action": "wait", "selector": "s2", "key_type": "rsa", "status": "absent", "activates_at": None},
                  {"action": "wait", "selector": "s3", "key_type": "ed25519", "status": "visible",
                   "activates_at": 1800000000},
                  {"action": "retire", "selector": "s0", "key_type": "rsa"}]}}
    assert FILTERS["mail_rotation_summary"](result) == [
        "a.test: signs with s1 (rsa)",
        "a.test: s2 (rsa) waits for its record in DNS (absent): publish what dns_records.yml writes",
        "a.test: s3 (ed25519) is visible in DNS; it signs from 2027-01-15 08:00 UTC on",
        "a.test: s0 (rsa) is retired: remove its record (dns_records.yml no longer writes it)",
        "b.test: signs with no key",
    ]


def test_summary_follows_a_removed_domain_only_while_its_keys_change():
    result = {"domains": {}, "removed": {"gone.test": {"active": {}}, "long-gone.test": {"active": {}}},
              "actions": {"gone.test": [{"action": "deactivate", "selector": "s1", "key_type": "rsa",
                                         "reason": "rsa keys are no longer wanted"}], "long-gone.test": []}}
    assert FILTERS["mail_rotation_summary"](result) == [
        "gone.test: removed from the site, its keys are retired after the grace period",
        "gone.test: s1 (rsa) no longer signs (rsa keys are no longer wanted); it stays published for the grace period",
    ]


@pytest.mark.parametrize("rotation, ttl, message", [
    ({}, "4d", None), ({"interval": "2y"}, "4d", "duration '2y'"),
    ({"grace": "3d"}, "4d", "shorter than the SRS address lifetime"), ({"grace": "10d"}, "2w", "shorter than"),
    ({"interval": "20d"}, "4d", "must be longer than grace"), ({"drop": "1d"}, "4d", "unknown keys drop"),
    ({"grace": "3d"}, None, "shorter than the SRS address lifetime (opensmtpd_srs_ttl, 345600 s)"),
])
def test_srs_rotation_errors(rotation, ttl, message):
    errors = FILTERS["mail_srs_rotation_errors"](rotation, ttl)
    assert (errors == []) if message is None else any(message in e for e in errors), errors


def test_the_filters_need_neither_cryptography_nor_dnspython(tmp_path):
    """The controller may lack what only dkim_keys needs on the signing hosts."""
    for package in ("cryptography", "dns"):
        (tmp_path / f"{package}.py").write_text(f"raise ImportError('{package} is hidden from this test')\n")
    code = ("from ansible_collections.opendove.mailserver.plugins.filter import mail_mta_sts, "
            "mail_rotation, mail_site\n"
            "print(mail_rotation.mail_dkim_rotation_errors({'interval': '90d'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60,
                            env=dict(os.environ, PYTHONPATH=f"{tmp_path}:{ROOT / 'collections'}"))
    assert result.returncode == 0 and result.stdout == "[]\n", result.stderr
