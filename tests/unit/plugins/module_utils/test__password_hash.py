"""Unit tests of password hashes: their scheme, their cost as libxcrypt reads it, and the cost limit."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
import yaml
from ansible_collections.opendove.mailserver.plugins.module_utils import _password_hash as ph

ROOT = Path(__file__).resolve().parents[4]
SALT16, SALT22 = "M89SwZdOBVCxPkgO", "IRldVpXk6c34T8HuJ/Nfd/"
SHA512 = "$6$M89SwZdOBVCxPkgO$1oFVYkzc3vttm45JdFht7gMT16SI6bnSZObF572mPis2.rn/ePa4.YG4uMt8QEhGzZijwrGLvXWLjOkyx35Vs/"
BODY86, BODY53, BODY43 = SHA512[-86:], "fKcru7uOT6ENK.Mb4UV.z.hz6K6x6.FeQZW3EKClovDwcagOKOGDS", "a" * 43


def sha512(rounds=None):
    return f"$6${'' if rounds is None else f'rounds={rounds}$'}{SALT16}${BODY86}"


def bcrypt(cost, ident="2b"):
    return f"${ident}${cost}${BODY53}"


def yescrypt(params):
    return f"$y${params}${SALT22}${BODY43}"


# libxcrypt's crypt_gensalt("$y$", count): the settings mkpasswd -m yescrypt -R count writes (5: its default).
GENSALT_PREFIXES = {1: "j75", 2: "j85", 3: "j7T", 4: "j8T", 5: "j9T"}


@pytest.fixture(scope="module")
def libcrypt():
    try:
        lib = ctypes.CDLL("libcrypt.so.1")
    except OSError:
        pytest.skip("no libcrypt.so.1 (libxcrypt) on this machine")
    lib.crypt.restype, lib.crypt.argtypes = ctypes.c_char_p, [ctypes.c_char_p, ctypes.c_char_p]
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    return lib


@pytest.mark.parametrize("value, scheme", [
    (SHA512, "SHA512-crypt"),
    (sha512(656000), "SHA512-crypt"),
    (bcrypt("10"), "bcrypt"),
    (bcrypt("10", "2y"), "bcrypt"),
    (yescrypt("j9T"), "yescrypt"),
    (bcrypt("10", "2a"), None),
    ("$1$abcdefgh$abcdefghijklmnopqrstuv", None),
    ("{BLF-CRYPT}" + bcrypt("06"), None),
    ("secret", None),
    (SHA512[:-1], None),
    (None, None),
])
def test_hash_scheme(value, scheme):
    assert ph.hash_scheme(value) == scheme


@pytest.mark.parametrize("count, prefix", GENSALT_PREFIXES.items())
def test_yescrypt_parameters_decode_as_libxcrypt_writes_them(count, prefix):
    params = ph.decode_yescrypt_params(prefix)
    assert (params["N"], params["r"]) == ph.yescrypt_gensalt_params(count)
    assert params == dict(flavor=47, N=params["N"], r=params["r"], p=1, t=0, g=0, NROM=0)


def test_yescrypt_cost_doubles_with_each_count():
    products = [ph.yescrypt_gensalt_params(count)[0] * ph.yescrypt_gensalt_params(count)[1] for count in range(1, 12)]
    assert products == [2 ** (count + 12) for count in range(1, 12)]
    decoded = [ph.decode_yescrypt_params(prefix) for prefix in GENSALT_PREFIXES.values()]
    assert [p["N"] * p["r"] for p in decoded] == [8192, 16384, 32768, 65536, 131072]


@pytest.mark.parametrize("field, params", [
    ("j9T..", {"p": 2}),                 # have 1: p follows (p counts from 2)
    ("j9T0..", {"p": 2, "t": 1}),        # have 3: p and t
    ("j9T1.", {"g": 1}),                 # have 4: g
    ("j9T2..", {"p": 2, "g": 1}),        # have 5: p and g
    ("j9T5/", {"NROM": 4}),              # have 8: log2 NROM 2
    ("k.9T", {"flavor": 48}),            # a first character above 47 takes a second one: 48 + 0
    ("kz9T", {"flavor": 111}),           # 48 + 63
    ("l.9T", {"flavor": 112}),           # 48 + 64
    ("j7k.", {"r": 49}),                 # r from 1: 1 + 48
])
def test_yescrypt_variable_length_fields(field, params):
    decoded = ph.decode_yescrypt_params(field)
    assert {key: decoded[key] for key in params} == params


@pytest.mark.parametrize("field, message", [
    ("j", "its parameters do not decode"),
    ("j9", "its parameters do not decode"),
    ("j9T0.", "its parameters do not decode"),        # t announced, missing
    ("s..9T", "its flavor 560 is unknown"),
    ("j.T", None),                                       # log2 N 1: N=2, allowed by libxcrypt
])
def test_bad_yescrypt_parameters_are_refused(field, message):
    if message is None:
        assert ph.decode_yescrypt_params(field)["N"] == 2
        return
    with pytest.raises(ph.PasswordHashError, match=message):
        ph.decode_yescrypt_params(field)


def test_decoder_agrees_with_libxcrypt_gensalt_for_every_count(libcrypt):
    for count in range(1, 12):
        setting = libcrypt.crypt_gensalt(b"$y$", count, None, 0).decode()
        params = ph.decode_yescrypt_params(setting.split("$")[2])
        assert (params["N"], params["r"]) == ph.yescrypt_gensalt_params(count), setting
        if count in GENSALT_PREFIXES:
            assert setting.startswith(f"$y${GENSALT_PREFIXES[count]}$")


def test_libxcrypt_computes_a_two_character_r_as_decoded(libcrypt):
    # r=49 is written in two characters (k.); crypt() takes it, so the setting means what we decode.
    result = libcrypt.crypt(b"pw", f"$y$j7k.${SALT22}".encode())
    assert result.startswith(b"$y$j7k.$") and ph.decode_yescrypt_params("j7k.")["r"] == 49


@pytest.mark.parametrize("value, cost", [
    (SHA512, ("SHA512-crypt", {"rounds": 5000})),
    (sha512(1000), ("SHA512-crypt", {"rounds": 1000})),
    (sha512(656000), ("SHA512-crypt", {"rounds": 656000})),
    (bcrypt("04"), ("bcrypt", {"cost": 4})),
    (bcrypt("31", "2y"), ("bcrypt", {"cost": 31})),
    (yescrypt("j7T"), ("yescrypt", {"flavor": 47, "N": 1024, "r": 32, "p": 1, "t": 0, "g": 0, "NROM": 0})),
])
def test_hash_cost_reads_the_cost_fields(value, cost):
    assert ph.hash_cost(value) == cost


@pytest.mark.parametrize("value, message", [
    (sha512("abc"), "is not a well-formed SHA512-crypt hash: its rounds= is not a number from 1000 to 999999999"),
    (sha512(999), "its rounds= is not a number from 1000"),           # libxcrypt refuses; glibc clamped
    (sha512("01000"), "without leading zeros"),
    (sha512(1_000_000_000), "its rounds= is not a number"),
    (sha512(""), "its rounds= is not a number"),
    (bcrypt("99"), "is not a well-formed bcrypt hash: its cost 99 is not from 04 to 31"),
    (bcrypt("03"), "its cost 03 is not from 04 to 31"),
    (yescrypt("j9"), "is not a well-formed yescrypt hash: its parameters do not decode"),
    ("$6$short", "is not a well-formed SHA512-crypt ($6$), yescrypt ($y$) or bcrypt ($2b$/$2y$) hash"),
])
def test_cost_fields_crypt_would_refuse_are_malformed(value, message):
    with pytest.raises(ph.PasswordHashError, match=message.replace("$", r"\$").replace("(", r"\(")
                       .replace(")", r"\)")) as info:
        ph.hash_cost(value)
    assert "would refuse every password" in str(info.value) or value == "$6$short"


def test_libxcrypt_refuses_what_is_called_malformed(libcrypt):
    for value in (sha512(999), sha512("01000"), bcrypt("99"), bcrypt("03")):
        assert libcrypt.crypt(b"pw", value.encode()).startswith(b"*"), value


DEFAULTS = ph.DEFAULT_MAX_COST
CUSTOM = {"sha512_crypt_rounds": 5000, "bcrypt_cost": 5, "yescrypt_cost": 1}


@pytest.mark.parametrize("value, limits, refused", [
    # default limits: SHA512-crypt 20000 rounds, bcrypt 7, yescrypt count 3 (N*r 32768)
    (SHA512, DEFAULTS, False),
    (sha512(19999), DEFAULTS, False),
    (sha512(20000), DEFAULTS, False),
    (sha512(20001), DEFAULTS, True),
    (sha512(656000), DEFAULTS, True),
    (bcrypt("06"), DEFAULTS, False),
    (bcrypt("07"), DEFAULTS, False),
    (bcrypt("08", "2y"), DEFAULTS, True),
    (bcrypt("10"), DEFAULTS, True),
    (yescrypt("j75"), DEFAULTS, False),
    (yescrypt("j85"), DEFAULTS, False),
    (yescrypt("j7T"), DEFAULTS, False),
    (yescrypt("j8T"), DEFAULTS, True),
    (yescrypt("j9T"), DEFAULTS, True),
    (yescrypt("jDU"), DEFAULTS, True),     # N=65536 r=33: beyond any count, still above
    (yescrypt("j65"), DEFAULTS, False),    # N=512 r=8: below count 1
    # custom limits
    (SHA512, CUSTOM, False),
    (sha512(5001), CUSTOM, True),
    (bcrypt("05"), CUSTOM, False),
    (bcrypt("06"), CUSTOM, True),
    (yescrypt("j75"), CUSTOM, False),
    (yescrypt("j85"), CUSTOM, True),
    (yescrypt("j9T"), dict(DEFAULTS, yescrypt_cost=5), False),
    (sha512(656000), dict(DEFAULTS, sha512_crypt_rounds=999_999_999), False),
])
def test_cost_limit(value, limits, refused):
    problem = ph.password_hash_problem(value, limits)
    assert (problem is not None) is refused, problem
    if refused:
        assert value not in problem and value.split("$")[-1] not in problem


@pytest.mark.parametrize("value, start", [
    (sha512(656000), "is a SHA512-crypt hash of 656000 rounds, above the limit of 20000 "
                     "(mail_password_hash_max_cost.sha512_crypt_rounds). OpenSMTPD checks every SMTP AUTH password "
                     "in its single lookup process"),
    (bcrypt("10"), "is a bcrypt hash of cost 10, above the limit of 7 (mail_password_hash_max_cost.bcrypt_cost)."),
    (yescrypt("j9T"), "is a yescrypt hash of N=4096 r=32 (N*r 131072, count 5), above the limit of N*r 32768 "
                      "(count 3, mail_password_hash_max_cost.yescrypt_cost)."),
    (yescrypt("jDU"), "is a yescrypt hash of N=65536 r=33 (N*r 2162688), above"),
])
def test_costly_hash_message_says_cost_limit_why_and_how(value, start):
    problem = ph.password_hash_problem(value)
    assert problem.startswith(start)
    for how in ("`mkpasswd -m yescrypt -R 3`", "`mkpasswd -m sha-512 -R 5000`",
                "`passlib.hash.sha512_crypt.using(rounds=5000).hash(password)`", "failed logins from strangers"):
        assert how in problem


@pytest.mark.parametrize("field, extra", [
    ("j7T..", "p"), ("j7T0..", "p, t"), ("j7T5/", "NROM"), ("k.7T", "flavor"), ("i7T", "flavor"),
])
def test_yescrypt_settings_gensalt_never_writes_are_refused(field, extra):
    assert ph.password_hash_problem(yescrypt(field)).startswith(
        f"is a yescrypt hash with settings crypt_gensalt never writes ({extra})")


@pytest.mark.parametrize("max_cost, errors", [
    (None, []),
    ({}, []),
    ({"bcrypt_cost": 8}, []),
    ({"sha512_crypt_rounds": "5000", "bcrypt_cost": 4, "yescrypt_cost": 11}, []),
    ({"bcrypt": 8}, ["unknown keys bcrypt (known: bcrypt_cost, sha512_crypt_rounds, yescrypt_cost)"]),
    ({"bcrypt_cost": 3}, ["bcrypt_cost 3 is not a whole number from 4 to 31"]),
    ({"bcrypt_cost": 7.5}, ["bcrypt_cost 7.5 is not a whole number from 4 to 31"]),
    ({"yescrypt_cost": 12}, ["yescrypt_cost 12 is not a whole number from 1 to 11"]),
    ({"yescrypt_cost": True}, ["yescrypt_cost True is not a whole number from 1 to 11"]),
    ({"sha512_crypt_rounds": "lots"}, ["sha512_crypt_rounds 'lots' is not a whole number from 1000 to 999999999"]),
    ({"sha512_crypt_rounds": 999}, ["sha512_crypt_rounds 999 is not a whole number from 1000 to 999999999"]),
    ([7], ["must be a mapping {sha512_crypt_rounds, bcrypt_cost, yescrypt_cost} (or {} for the defaults)"]),
])
def test_max_cost_errors(max_cost, errors):
    assert ph.max_cost_errors(max_cost) == errors


@pytest.mark.parametrize("max_cost, limits", [
    (None, DEFAULTS),
    ({"bcrypt_cost": 6}, dict(DEFAULTS, bcrypt_cost=6)),
    ({"bcrypt_cost": "6", "yescrypt_cost": 99}, dict(DEFAULTS, bcrypt_cost=6)),   # the invalid entry: default
    ({"sha512_crypt_rounds": 1000, "bcrypt_cost": 4, "yescrypt_cost": 1},
     CUSTOM | {"sha512_crypt_rounds": 1000, "bcrypt_cost": 4}),
])
def test_max_cost_limits_fill_in_the_defaults(max_cost, limits):
    assert ph.max_cost_limits(max_cost) == limits


def test_default_limits_are_what_docs_and_gensalt_say():
    assert DEFAULTS == {"sha512_crypt_rounds": 20000, "bcrypt_cost": 7, "yescrypt_cost": 3}
    assert ph.yescrypt_gensalt_params(DEFAULTS["yescrypt_cost"]) == (1024, 32)   # j7T


def test_test_inventory_hashes_are_within_the_limit_and_match_their_passwords(libcrypt):
    inventory = yaml.safe_load((ROOT / "molecule" / "shared" / "inventory" / "mail.yml").read_text())
    hashes = {entry["address"]: entry["password_hash"] for entry in inventory["mail_accounts"]}
    hashes[inventory["test_rollout"]["address"]] = inventory["test_rollout"]["password_hash"]
    passwords = dict(inventory["test_passwords"], **{inventory["test_rollout"]["address"]:
                                                     inventory["test_rollout"]["password"]})
    assert sorted(ph.hash_scheme(value) for value in hashes.values()) == [
        "SHA512-crypt", "SHA512-crypt", "bcrypt", "yescrypt"]
    for address, value in hashes.items():
        assert ph.password_hash_problem(value) is None, address
        assert libcrypt.crypt(passwords[address].encode(), value.encode()).decode() == value, address
