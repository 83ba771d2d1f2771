"""Unit tests of host names and mail addresses: what is refused, why, and the form to write instead."""

from __future__ import annotations

import pytest
from ansible_collections.opendove.mailserver.plugins.module_utils import _names as names
from ansible_collections.opendove.mailserver.plugins.module_utils._names import names_not_covered

NAMES = ["mta-sts.one.test", "mta-sts.two.test"]


@pytest.mark.parametrize("sans, missing", [
    (["DNS:mta-sts.one.test", "DNS:mta-sts.two.test"], []),
    (["DNS:MTA-STS.one.test", "DNS:*.two.test"], []),
    (["DNS:mta-sts.one.test", "IP:192.0.2.1"], ["mta-sts.two.test"]),
    (["DNS:*.test"], NAMES),  # a wildcard covers one label only
    (["DNS:*.sts.one.test", "DNS:one.test"], NAMES),
    (["email:mta-sts.one.test"], NAMES),
    (None, NAMES),
])
def test_names_not_covered(sans, missing):
    assert names_not_covered(sans, NAMES) == missing


@pytest.mark.parametrize("name, valid", [
    ("mx1.example.test", True),
    ("a-b.example", True),
    ("xn--bcher-kva.example", True),
    ("example", False),
    ("Example.test", False),
    ("example.test.", False),
    ("bücher.example", False),
    ("-bad.example.test", False),
    ("bad-.example.test", False),
    ("under_score.test", False),
    ("a..b.test", False),
    ("10.0.0.1", False),
    ("x" * 64 + ".test", False),
    (None, False),
])
def test_is_hostname(name, valid):
    assert names.is_hostname(name) is valid


@pytest.mark.parametrize("name, problem", [
    ("Example.test", "it has upper-case letters: write 'example.test'"),
    ("example.test.", "it ends with a dot: write 'example.test'"),
    ("MX1.Example.TEST.", "it has upper-case letters and ends with a dot: write 'mx1.example.test'"),
    ("bücher.example", "it is in Unicode (a U-label), not in its ASCII (A-label) form: write 'xn--bcher-kva.example'"),
    ("Bücher.example.", "it is in Unicode (a U-label), not in its ASCII (A-label) form and ends with a dot: "
                        "write 'xn--bcher-kva.example'"),
    ("a\ufffdb.example", "it contains a non-ASCII character and is not a valid internationalised domain name"),
    ("mx1", "it is a single label, not a fully qualified name (like mx1.example.org)"),
    ("MX1.", "it is a single label"),  # what is left after the fixes is still wrong: that is said
    ("mx1.example.test:25", "it has a port: give the name only"),
    ("smtp://mx1.example.test", "it has a scheme: give the name only"),
    ("mx1.example.test/x", "it has a path: give the name only"),
    ("postmaster@example.test", "it has an @ (a mail address?): give the name only"),
    ("under_score.test", "it has a label 'under_score' that is not 1 to 63 letters a-z, digits and inner hyphens"),
    ("a..b.test", "it has an empty label (a leading dot or two dots in a row)"),
    ("example.test..", "it has an empty label"),
    ("10.0.0.1", "it ends with a numeric label (an IP address?): give a name"),
    ("x" * 250 + ".test", "it is longer than 253 characters"),
    ("ex\x00ample.test", "it contains a control character"),
    ("example.test\n", "it contains a control character"),
    ("", "it is empty"),
    (None, "it is missing"),
    (42, "it is a int, not a string"),
])
def test_name_problem_says_why_and_what_to_write(name, problem):
    assert names.name_problem(name).startswith(problem)


@pytest.mark.parametrize("name", ["example.test", "mx1.example.test", "xn--bcher-kva.example", "xn--n3h.example"])
def test_name_problem_accepts_lower_case_ascii_names_and_a_labels(name):
    assert names.name_problem(name) is None


@pytest.mark.parametrize("name, problem", [
    ("_spf.example.test", None),
    ("_25._tcp.mx1.example.test", None),
    ("_spf.Example.test", "it has upper-case letters: write '_spf.example.test'"),
    ("-spf.example.test", "it has a label '-spf' that is not 1 to 63 letters a-z, digits, underscores and inner "
                          "hyphens"),
    ("_spf", "it is a single label"),
    ("_spf.192.0.2.1", "it ends with a numeric label"),
])
def test_name_problem_with_underscores_allows_them_in_labels_only(name, problem):
    found = names.name_problem(name, underscores=True)
    assert found is None if problem is None else found.startswith(problem)


@pytest.mark.parametrize("address, parts", [
    ("alice@example.test", ("alice", "example.test")),
    ("first.last+tag@example.test", ("first.last+tag", "example.test")),
    ("alice@xn--bcher-kva.example", ("alice", "xn--bcher-kva.example")),
    ("alice@@example.test", None),
    ("alice", None),
    (".alice@example.test", None),
    ("al..ice@example.test", None),
    ("Alice@example.test", None),
    ("alice@example", None),
    ("alice@example.test.", None),
    ("älice@example.test", None),
    ("x" * 65 + "@example.test", None),
    (42, None),
])
def test_split_address(address, parts):
    assert names.split_address(address) == parts


@pytest.mark.parametrize("address, problem", [
    ("älice@example.test", "its local part contains a non-ASCII character: internationalised (SMTPUTF8) addresses "
                           "are not supported"),
    ("alice@bücher.example", "its domain is in Unicode (a U-label), not in its ASCII (A-label) form: "
                             "write 'alice@xn--bcher-kva.example'"),
    ("al\x00ice@example.test", "it contains a control character"),
    ("alice@example.test\r\n", "it contains a control character"),
    ("al\x85ice@example.test", "it contains a control character"),
    ("alice@Example.TEST", "its domain has upper-case letters: write 'alice@example.test'"),
    ("alice@example.test.", "its domain ends with a dot: write 'alice@example.test'"),
    ("Alice@Example.test", "its local part has upper-case letters and its domain has upper-case letters: "
                           "write 'alice@example.test'"),
    ("alice@localhost", "its domain is a single label"),
    ("alice", "it is not local-part@domain (with exactly one @)"),
    ("a@b@example.test", "it is not local-part@domain"),
    ("al ice@example.test", "its local part is not a dot-atom of at most 64 characters"),
    ("x" * 65 + "@example.test", "its local part is not a dot-atom of at most 64 characters"),
    (None, "it is missing"),
])
def test_address_problem_says_why_and_what_to_write(address, problem):
    assert names.address_problem(address).startswith(problem)


def test_address_problem_never_holds_a_raw_control_character():
    assert "\x00" not in names.address_problem("al\x00ice@example.test")
    assert "\x00" not in names.name_problem("ex\x00ample.test")


def test_u_labels_convert_by_idna_2008_where_the_idna_package_is_installed():
    # IDNA 2003 (the standard library's codec) maps ß to ss; IDNA 2008 keeps it.
    expected = "xn--strae-oqa.example" if names.idna else "strasse.example"
    assert names.name_problem("straße.example").endswith(f"write {expected!r}")
