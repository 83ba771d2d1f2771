"""Unit tests of DKIM key generation and the initial key ring plan."""

from __future__ import annotations

import base64
import calendar
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ansible_collections.opendove.mailserver.plugins.module_utils import _dkim_keyring as ring_
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import DnsRecordError

NOW = calendar.timegm(time.strptime("2026-11-25 12:00", "%Y-%m-%d %H:%M"))


@pytest.fixture(scope="module")
def rsa_pem():
    return ring_.generate_private_key("rsa", 1024)


def test_rsa_key_is_pkcs8_pem_of_the_requested_size(rsa_pem):
    assert rsa_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(rsa_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 1024


def test_rsa_public_key_is_the_subject_public_key_info(rsa_pem):
    der = base64.b64decode(ring_.public_key_b64(rsa_pem))
    public = serialization.load_der_public_key(der)
    assert public.public_numbers() == serialization.load_pem_private_key(rsa_pem, None).public_key().public_numbers()


def test_ed25519_public_key_is_the_raw_32_bytes():
    assert len(base64.b64decode(ring_.public_key_b64(ring_.generate_private_key("ed25519", None)))) == 32


def test_ed25519_key_file_is_the_base64_seed_that_rspamd_and_dkimpy_read():
    """Rspamd reads a PEM file as an RSA key; it (and dkimpy) take Ed25519 keys as the base64 raw seed."""
    data = ring_.generate_private_key("ed25519", None)
    seed = base64.b64decode(data.strip(), validate=True)
    assert len(seed) == 32 and data.endswith(b"\n")
    public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert ring_.public_key_b64(data) == base64.b64encode(public).decode()


def test_a_key_file_that_is_neither_form_is_refused():
    with pytest.raises(ring_.KeyRingError, match="not a PEM key nor a base64 Ed25519 seed"):
        ring_.public_key_b64(b"not a key")


@pytest.mark.parametrize("key_type, bits, message", [
    ("rsa", 512, "at least 1024 bits"),
    ("rsa", 1023, "at least 1024 bits"),
    ("rsa", None, "at least 1024 bits"),
    ("rsa", True, "at least 1024 bits"),
    ("dsa", 2048, "is not one of rsa, ed25519"),
])
def test_bad_key_requests_are_refused(key_type, bits, message):
    with pytest.raises(ring_.KeyRingError, match=message):
        ring_.generate_private_key(key_type, bits)


@pytest.mark.parametrize("key_type, taken, selector", [
    ("rsa", set(), "20261125"),
    ("rsa", {"20261125"}, "20261125-2"),
    ("rsa", {"20261125", "20261125-2"}, "20261125-3"),
    ("ed25519", {"20261125"}, "20261125-ed25519"),
])
def test_selectors_are_date_like_and_unique(key_type, taken, selector):
    assert ring_.selector_for(key_type, NOW, taken) == selector


@pytest.mark.parametrize("key_type, taken, selector", [
    ("rsa", set(), "20261125-mx1"),
    ("ed25519", set(), "20261125-mx1-ed25519"),
    ("rsa", {"20261125-mx1"}, "20261125-mx1-2"),
])
def test_host_tag_keeps_the_selectors_of_two_mx_hosts_apart(key_type, taken, selector):
    assert ring_.selector_for(key_type, NOW, taken, "mx1") == selector


def test_a_tag_that_makes_a_bad_selector_is_refused():
    with pytest.raises(DnsRecordError, match="DKIM selector"):
        ring_.selector_for("rsa", NOW, set(), "MX_1")


def test_first_run_plans_one_active_key_per_wanted_type():
    planned = ring_.plan_initial_keys(ring_.new_ring("example.test"), {"rsa": 2048, "ed25519": None}, NOW)
    assert planned == [
        {"selector": "20261125", "key_type": "rsa", "bits": 2048, "state": "active", "created": NOW, "activated": NOW},
        {"selector": "20261125-ed25519", "key_type": "ed25519", "bits": None, "state": "active", "created": NOW,
         "activated": NOW},
    ]


def test_ring_with_active_keys_plans_nothing():
    ring = ring_.with_keys(ring_.new_ring("example.test"),
                           ring_.plan_initial_keys(ring_.new_ring("example.test"), {"rsa": 2048}, NOW))
    assert ring_.plan_initial_keys(ring, {"rsa": 2048}, NOW + 86400) == []


def test_adding_ed25519_later_keeps_the_rsa_key():
    ring = ring_.with_keys(ring_.new_ring("example.test"),
                           ring_.plan_initial_keys(ring_.new_ring("example.test"), {"rsa": 2048}, NOW))
    planned = ring_.plan_initial_keys(ring, {"rsa": 2048, "ed25519": None}, NOW + 86400)
    assert [(k["selector"], k["key_type"]) for k in planned] == [("20261126-ed25519", "ed25519")]
    # The ring signs already: the new type waits for its record (rotate_keys.yml activates it).
    assert planned[0]["state"] == "published" and "activated" not in planned[0]
    assert ring_.plan_initial_keys(ring_.with_keys(ring, planned), {"rsa": 2048, "ed25519": None}, NOW) == []


def test_a_new_rsa_size_is_left_to_the_rotation():
    """site.yml keeps signing with the active key; rotate_keys.yml makes the successor with the new size."""
    ring = ring_.with_keys(ring_.new_ring("example.test"),
                           ring_.plan_initial_keys(ring_.new_ring("example.test"), {"rsa": 2048}, NOW))
    assert ring_.plan_initial_keys(ring, {"rsa": 4096}, NOW) == []


def test_with_keys_does_not_change_the_original():
    ring = ring_.new_ring("example.test")
    ring_.with_keys(ring, [{"selector": "s1"}])
    assert ring["keys"] == []


@pytest.mark.parametrize("ring, message", [
    ({"version": 2, "domain": "example.test", "keys": []}, "not a version 1 ring"),
    ({"version": 1, "domain": "example.org", "keys": []}, "not a version 1 ring"),
    ({"version": 1, "domain": "example.test", "keys": {}}, "not a version 1 ring"),
    ({"version": 1, "domain": "example.test", "keys": [{"selector": "s1", "key_type": "rsa", "state": "odd"}]},
     "unknown state or type"),
    ({"version": 1, "domain": "example.test", "keys": [{"selector": "S_1", "key_type": "rsa", "state": "active"}]},
     "DKIM selector"),
])
def test_invalid_rings_are_refused(ring, message):
    with pytest.raises(ValueError, match=message):
        ring_.check_ring(ring, "example.test")


def test_published_keys_leave_out_retired_ones():
    ring = {"version": 1, "domain": "example.test", "keys": [
        {"selector": "old", "key_type": "rsa", "state": "retired", "public_key": "A"},
        {"selector": "cur", "key_type": "rsa", "state": "active", "public_key": "B"},
        {"selector": "new", "key_type": "rsa", "state": "published", "public_key": "C"},
    ]}
    assert [k["selector"] for k in ring_.published_keys(ring)] == ["cur", "new"]


LISTING = ["example.com.json", "example.com.20261125.key", "example.com.20261125-mx1-ed25519.key",
           "example.com.au.json", "example.com.au.20261125.key", "sub.example.com.20261125.key",
           "example.com.20261125.key.tmp", "example.com..key", "example.com.Bad_Sel.key", "example.com.a.b.key"]


@pytest.mark.parametrize("domain, files", [
    # example.com.au's and sub.example.com's files are not example.com's; a selector is one label, no dot.
    ("example.com", ["example.com.20261125-mx1-ed25519.key", "example.com.20261125.key"]),
    ("example.com.au", ["example.com.au.20261125.key"]),
    ("sub.example.com", ["sub.example.com.20261125.key"]),
    ("com", []),
    ("example.org", []),
])
def test_key_files_of_matches_the_exact_domain(domain, files):
    assert ring_.key_files_of(domain, LISTING) == files


def test_key_files_of_finds_every_selector_the_ring_makes():
    selectors = [ring_.selector_for("rsa", NOW, set()), ring_.selector_for("ed25519", NOW, {"x"}, "mx1"),
                 ring_.selector_for("rsa", NOW, {"20261125"})]
    names = [ring_.key_file_name("example.com", selector) for selector in selectors]
    assert ring_.key_files_of("example.com", names) == sorted(names)
