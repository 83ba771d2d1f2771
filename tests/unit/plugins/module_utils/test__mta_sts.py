"""Unit tests of the MTA-STS policy text and its id."""

from __future__ import annotations

import re

import pytest
from ansible_collections.opendove.mailserver.plugins.module_utils import _mta_sts as sts

MX = ["mx2.example.test", "mx1.example.test"]


def test_policy_text_as_rfc_8461_shows_it():
    text = sts.policy_text({"mode": "enforce", "max_age": 604800}, MX)
    assert text == ("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: mx2.example.test\r\n"
                    "max_age: 604800\r\n")


def test_every_line_ends_with_crlf_and_no_bare_lf():
    text = sts.policy_text({"mode": "testing"}, MX)
    assert text.endswith("\r\n") and text.count("\n") == text.count("\r\n") == 5
    assert "max_age: 604800" in text  # the default


def test_id_is_letters_and_digits_of_allowed_length():
    text = sts.policy_text({"mode": "testing"}, MX)
    assert re.fullmatch(r"[A-Za-z0-9]{1,32}", sts.policy_id(text))
    assert sts.txt_value(text) == f"v=STSv1; id={sts.policy_id(text)}"


def test_id_is_stable_when_nothing_changes_and_ignores_mx_order():
    first = sts.policy_text({"mode": "enforce", "max_age": 86400}, MX)
    again = sts.policy_text({"max_age": 86400, "mode": "enforce"}, list(reversed(MX)) + ["mx1.example.test."])
    assert sts.policy_id(first) == sts.policy_id(again)


@pytest.mark.parametrize("settings, mx", [
    ({"mode": "testing", "max_age": 86400}, MX),
    ({"mode": "none", "max_age": 86400}, MX),
    ({"mode": "enforce", "max_age": 86401}, MX),
    ({"mode": "enforce", "max_age": 86400}, MX[:1]),
    ({"mode": "enforce", "max_age": 86400}, MX + ["mx3.example.test"]),
])
def test_id_changes_with_mode_max_age_or_mx_list(settings, mx):
    base = sts.policy_id(sts.policy_text({"mode": "enforce", "max_age": 86400}, MX))
    assert sts.policy_id(sts.policy_text(settings, mx)) != base


@pytest.mark.parametrize("settings, message", [
    ({"mode": "strict"}, "mode 'strict' is not one of testing, enforce, none"),
    ({}, "mode None"),
    ({"mode": "enforce", "max_age": 31557601}, "max_age 31557601 is not a whole number of seconds from 0"),
    ({"mode": "enforce", "max_age": -1}, "max_age -1"),
    ({"mode": "enforce", "max_age": "1w"}, "max_age '1w'"),
    ({"mode": "enforce", "max_age": True}, "max_age True"),
    ({"mode": "enforce", "mx": ["a.test"]}, "unknown keys mx"),
    ("enforce", "must be a mapping"),
])
def test_bad_settings_are_refused_with_the_reason(settings, message):
    errors = sts.settings_errors(settings)
    assert any(message in error for error in errors), errors
    with pytest.raises(sts.MtaStsError, match=re.escape(message)):
        sts.policy_text(settings, MX)


@pytest.mark.parametrize("max_age", [0, 1, 31557600])
def test_max_age_bounds_are_accepted(max_age):
    assert sts.settings_errors({"mode": "enforce", "max_age": max_age}) == []


def test_policy_needs_mx_host_names():
    with pytest.raises(sts.MtaStsError, match="no MX host"):
        sts.policy_text({"mode": "enforce"}, [])
    with pytest.raises(sts.MtaStsError, match="not host names"):
        sts.policy_text({"mode": "enforce"}, ["MX1.example.test"])


def test_policies_only_for_domains_with_an_entry():
    domains = [{"name": "a.test", "mta_sts": {"mode": "enforce"}}, {"name": "b.test"},
               {"name": "c.test", "mta_sts": {"mode": "testing", "max_age": 86400}}]
    result = sts.policies(domains, MX)
    assert [(p["domain"], p["host"]) for p in result] == [("a.test", "mta-sts.a.test"), ("c.test", "mta-sts.c.test")]
    assert all(p["id"] == sts.policy_id(p["text"]) for p in result)


@pytest.mark.parametrize(("listed", "expected"), [
    (None, ["mx1.a.test", "mx2.a.test"]),
    ([], ["mx1.a.test", "mx2.a.test"]),
    (["backup.a.test"], ["backup.a.test"]),
])
def test_policy_mx_is_the_listed_names_else_every_mx_host(listed, expected):
    assert sts.policy_mx(listed, ("mx1.a.test", "mx2.a.test")) == expected
