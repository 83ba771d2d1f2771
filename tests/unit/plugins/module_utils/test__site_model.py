"""Unit tests of the site model: every validator and every table builder."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.opendove.mailserver.plugins.module_utils import _site_model as site

SHA512 = "$6$M89SwZdOBVCxPkgO$1oFVYkzc3vttm45JdFht7gMT16SI6bnSZObF572mPis2.rn/ePa4.YG4uMt8QEhGzZijwrGLvXWLjOkyx35Vs/"
BCRYPT = "$2b$06$fKcru7uOT6ENK.Mb4UV.z.hz6K6x6.FeQZW3EKClovDwcagOKOGDS"
YESCRYPT = "$y$j7T$oqZZiyH.nbo2qQ1mfRK3I.$lhA7jFP/RhEXhUaua5bcZhDsBxwtZwGImnnb1R4sXs1"

SITE = {
    "hostname": "mx1.example.test",
    "domains": [{"name": "example.test", "catchall": False}, {"name": "example.org", "catchall": "info@example.org"}],
    "accounts": [
        {"address": "alice@example.test", "password_hash": SHA512},
        {"address": "bob@example.org", "password_hash": BCRYPT},
    ],
    "aliases": {
        "postmaster@example.test": ["alice@example.test"],
        "abuse@example.test": ["postmaster@example.test"],
        "info@example.org": ["bob@example.org", "friend@elsewhere.test"],
    },
    "tls_certificate": "/etc/ssl/certs/mx1.pem",
    "tls_private_key": "/etc/ssl/private/mx1.key",
    "relayhost": {},
}


def errors_of(max_cost=None, spf_include=None, **changes):
    model = copy.deepcopy(SITE)
    model.update(changes)
    return site.validate_site(model["hostname"], model["domains"], model["accounts"], model["aliases"],
                              model["tls_certificate"], model["tls_private_key"], model["relayhost"], max_cost,
                              spf_include)


def test_sound_site_has_no_errors():
    assert errors_of() == []


@pytest.mark.parametrize("hostname, message", [
    ("mx1", "'mx1' is not a lower-case fully qualified host name: it is a single label, not a fully qualified name "
            "(like mx1.example.org)"),
    ("MX1.example.test", "'MX1.example.test' is not a lower-case fully qualified host name: it has upper-case "
                         "letters: write 'mx1.example.test'"),
    ("mx1.example.test.", "'mx1.example.test.' is not a lower-case fully qualified host name: it ends with a dot: "
                          "write 'mx1.example.test'"),
    ("mx1.example.test:25", "it has a port: give the name only"),
    ("smtp://mx1.example.test", "it has a scheme: give the name only"),
    ("mx1.bücher.example", "it is in Unicode (a U-label), not in its ASCII (A-label) form: "
                           "write 'mx1.xn--bcher-kva.example'"),
    ("", "'' is not a lower-case fully qualified host name: it is empty"),
    (None, "None is not a lower-case fully qualified host name: it is missing"),
])
def test_bad_hostname_is_named(hostname, message):
    errors = errors_of(hostname=hostname)
    assert len(errors) == 1 and errors[0].startswith("mail_hostname: ") and message in errors[0], errors


@pytest.mark.parametrize("field", ["tls_certificate", "tls_private_key"])
@pytest.mark.parametrize("path", ["", "relative/cert.pem", None])
def test_certificate_path_must_be_absolute(field, path):
    assert errors_of(**{field: path}) == [f"mail_{field}: {path!r} is not an absolute path"]


def test_malformed_domain_is_named():
    domains = SITE["domains"] + [{"name": "bad_domain"}]
    assert errors_of(domains=domains) == [
        "mail_domains[2]: name 'bad_domain' is not a lower-case domain name: it has a label 'bad_domain' that is not "
        "1 to 63 letters a-z, digits and inner hyphens"]


@pytest.mark.parametrize("name, message", [
    ("Example.net", "name 'Example.net' is not a lower-case domain name: it has upper-case letters: "
                    "write 'example.net'"),
    ("example.net.", "name 'example.net.' is not a lower-case domain name: it ends with a dot: write 'example.net'"),
    ("bücher.example", "name 'bücher.example' is not a lower-case domain name: it is in Unicode (a U-label), not in "
                       "its ASCII (A-label) form: write 'xn--bcher-kva.example'"),
    ("example", "name 'example' is not a lower-case domain name: it is a single label"),
    ("exa\x00mple.net", "name 'exa\\x00mple.net' is not a lower-case domain name: it contains a control character"),
])
def test_domain_not_in_the_form_to_use_is_named_with_that_form(name, message):
    errors = errors_of(domains=SITE["domains"] + [{"name": name}])
    assert len(errors) == 1 and errors[0].startswith(f"mail_domains[2]: {message}"), errors
    assert "\x00" not in errors[0]


def test_a_label_domain_is_accepted():
    accounts = SITE["accounts"] + [{"address": "info@xn--bcher-kva.example", "password_hash": YESCRYPT}]
    assert errors_of(domains=SITE["domains"] + [{"name": "xn--bcher-kva.example"}], accounts=accounts) == []


def test_duplicate_domain_is_named():
    domains = SITE["domains"] + [{"name": "example.test"}]
    assert errors_of(domains=domains) == ["mail_domains[2] (example.test): the domain is listed twice"]


@pytest.mark.parametrize("domains", [[], None, "example.test"])
def test_domains_must_be_a_non_empty_list(domains):
    assert "mail_domains: must be a non-empty list of domain entries" in errors_of(domains=domains)


def test_account_in_unknown_domain_is_named():
    accounts = SITE["accounts"] + [{"address": "carol@unhosted.test", "password_hash": YESCRYPT}]
    assert errors_of(accounts=accounts) == [
        "mail_accounts[2] (carol@unhosted.test): domain unhosted.test is not in mail_domains"]


def test_duplicate_account_is_named():
    accounts = SITE["accounts"] + [{"address": "alice@example.test", "password_hash": YESCRYPT}]
    assert errors_of(accounts=accounts) == ["mail_accounts[2] (alice@example.test): the account is listed twice"]


def test_malformed_account_address_is_named():
    accounts = SITE["accounts"] + [{"address": "carol", "password_hash": YESCRYPT}]
    assert errors_of(accounts=accounts) == [
        "mail_accounts[2]: address 'carol' is not a lower-case mail address: it is not local-part@domain (with "
        "exactly one @)"]


ADDRESS_PROBLEMS = [
    ("cärol@example.test", "'cärol@example.test' is not a lower-case mail address: its local part contains a "
                           "non-ASCII character: internationalised (SMTPUTF8) addresses are not supported"),
    ("carol@bücher.example", "'carol@bücher.example' is not a lower-case mail address: its domain is in Unicode "
                             "(a U-label), not in its ASCII (A-label) form: write 'carol@xn--bcher-kva.example'"),
    ("ca\x00rol@example.test",
     "'ca\\x00rol@example.test' is not a lower-case mail address: it contains a control character"),
    ("carol@example.test\n", "it contains a control character"),
    ("carol@Example.TEST", "its domain has upper-case letters: write 'carol@example.test'"),
    ("carol@example.test.", "its domain ends with a dot: write 'carol@example.test'"),
    ("Carol@example.test", "its local part has upper-case letters: write 'carol@example.test'"),
]


@pytest.mark.parametrize("address, message", ADDRESS_PROBLEMS)
def test_account_address_not_in_the_form_to_use_is_named(address, message):
    accounts = SITE["accounts"] + [{"address": address, "password_hash": YESCRYPT}]
    errors = errors_of(accounts=accounts)
    assert len(errors) == 1 and errors[0].startswith("mail_accounts[2]: address ") and message in errors[0], errors
    assert "\x00" not in errors[0]


@pytest.mark.parametrize("address, message", ADDRESS_PROBLEMS)
def test_alias_not_in_the_form_to_use_is_named(address, message):
    errors = errors_of(aliases=dict(SITE["aliases"], **{address: ["alice@example.test"]}))
    assert len(errors) == 1 and errors[0].startswith(f"mail_aliases[{address!r}]: ") and message in errors[0], errors
    assert "\x00" not in errors[0]


@pytest.mark.parametrize("address, message", ADDRESS_PROBLEMS)
def test_alias_target_not_in_the_form_to_use_is_named(address, message):
    errors = errors_of(aliases=dict(SITE["aliases"], **{"x@example.test": ["alice@example.test", address]}))
    assert len(errors) == 1 and errors[0].startswith(
        f"mail_aliases['x@example.test']: target {address!r} is not a lower-case mail address: "), errors
    assert message in errors[0] and "\x00" not in errors[0]


@pytest.mark.parametrize("value, reason", [
    ("hunter2", "is not a crypt hash (clear text?)"),
    ("{BLF-CRYPT}" + BCRYPT, "has a {SCHEME} prefix"),
    ("$1$abcdefgh$abcdefghijklmnopqrstuv", "is a MD5-crypt hash"),
    ("$5$abcdefgh$abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq", "is a SHA256-crypt hash"),
    ("$6$short", "is not a well-formed"),
    ("$6$rounds=abc$M89SwZdOBVCxPkgO$" + SHA512[-86:],
     "is not a well-formed SHA512-crypt hash: its rounds= is not a number"),
    (BCRYPT.replace("$06$", "$99$"), "is not a well-formed bcrypt hash: its cost 99 is not from 04 to 31"),
    ("$6$rounds=656000$M89SwZdOBVCxPkgO$" + SHA512[-86:], "is a SHA512-crypt hash of 656000 rounds, above the limit "
                                                          "of 20000"),
    ("$2b$10$zDJOug6MTi1.wF8d44W/su481ZiRF6ALG6iamMc1rowAkX2OQvSye", "is a bcrypt hash of cost 10, above the limit "
                                                                     "of 7"),
    ("$y$j9T$IRldVpXk6c34T8HuJ/Nfd/$EvalW3i7k6G5r6.WsbvhR8dMCJIlu7Eh1RERRSRvPk2", "is a yescrypt hash of N=4096 r=32"),
    ("", "is missing or empty"),
    (None, "is missing or empty"),
])
def test_bad_password_hash_is_named_without_its_value(value, reason):
    accounts = [SITE["accounts"][0], {"address": "bob@example.org", "password_hash": value}]
    errors = errors_of(accounts=accounts)
    assert len(errors) == 1
    assert errors[0].startswith(f"mail_accounts[1] (bob@example.org): password_hash {reason}")
    if value:
        assert value not in errors[0]


@pytest.mark.parametrize("max_cost, refused", [
    ({"bcrypt_cost": 5}, ["bob@example.org"]),
    ({"sha512_crypt_rounds": 4999}, ["alice@example.test"]),
    ({"sha512_crypt_rounds": 5000, "bcrypt_cost": 6, "yescrypt_cost": 3}, []),
    ({"yescrypt_cost": 2}, ["carol@example.test"]),
])
def test_custom_cost_limits_apply_to_every_account(max_cost, refused):
    accounts = SITE["accounts"] + [{"address": "carol@example.test", "password_hash": YESCRYPT}]
    errors = errors_of(max_cost=max_cost, accounts=accounts)
    assert [e.split("(")[1].split(")")[0] for e in errors] == refused, errors
    assert all("above the limit" in e and "mail_password_hash_max_cost." in e for e in errors)


def test_bad_cost_limits_are_named_and_the_defaults_apply():
    errors = errors_of(max_cost={"bcrypt_cost": 40, "md5": 1},
                       accounts=[{"address": "alice@example.test", "password_hash": SHA512},
                                 {"address": "bob@example.org", "password_hash": BCRYPT.replace("$06$", "$08$")}])
    assert errors[:2] == ["mail_password_hash_max_cost: unknown keys md5 (known: bcrypt_cost, sha512_crypt_rounds, "
                          "yescrypt_cost)",
                          "mail_password_hash_max_cost: bcrypt_cost 40 is not a whole number from 4 to 31"]
    assert errors[2].startswith("mail_accounts[1] (bob@example.org): password_hash is a bcrypt hash of cost 8, "
                                "above the limit of 7")
    assert len(errors) == 3


def test_alias_loop_is_named():
    aliases = {**SITE["aliases"], "a@example.test": ["b@example.test"], "b@example.test": ["c@example.test"],
               "c@example.test": ["a@example.test"]}
    assert errors_of(aliases=aliases) == ["mail_aliases: alias loop a@example.test -> b@example.test -> c@example.test"
                                          " -> a@example.test"]


def test_alias_to_itself_is_a_loop():
    aliases = dict(SITE["aliases"], **{"a@example.test": "a@example.test"})
    assert errors_of(aliases=aliases) == ["mail_aliases: alias loop a@example.test -> a@example.test"]


def test_alias_to_unknown_local_address_is_named():
    aliases = {"postmaster@example.test": ["nobody@example.test"]}
    assert errors_of(aliases=aliases, domains=[{"name": "example.test"}, {"name": "example.org"}]) == [
        "mail_aliases['postmaster@example.test']: target nobody@example.test is in a local domain but is "
        "neither an account nor an alias"]


def test_alias_that_is_also_an_account_is_named():
    aliases = dict(SITE["aliases"], **{"alice@example.test": ["bob@example.org"]})
    assert errors_of(aliases=aliases) == [
        "mail_aliases['alice@example.test']: the address is also an account; an address is either a mailbox "
        "or an alias"]


def test_alias_in_unknown_domain_is_named():
    aliases = dict(SITE["aliases"], **{"x@unhosted.test": ["alice@example.test"]})
    assert errors_of(aliases=aliases) == ["mail_aliases['x@unhosted.test']: domain unhosted.test is not in mail_domains"]


def test_alias_without_target_is_named():
    aliases = dict(SITE["aliases"], **{"x@example.test": []})
    assert errors_of(aliases=aliases) == ["mail_aliases['x@example.test']: has no target"]


@pytest.mark.parametrize("catchall, message", [
    (True, "must be false or the address that receives mail for unknown users of the domain"),
    ("nobody@example.org", "target nobody@example.org is in a local domain but is neither an account nor an alias"),
    ("not an address", "target 'not an address' is not a lower-case mail address: it is not local-part@domain "
                       "(with exactly one @)"),
])
def test_bad_catchall_is_named(catchall, message):
    domains = [SITE["domains"][0], {"name": "example.org", "catchall": catchall}]
    assert errors_of(domains=domains) == [f"mail_domains[1] (example.org).catchall: {message}"]


def test_every_problem_is_reported_at_once():
    assert site.validate_site("mx1", [], [], {}, "/c", "/k") == [
        "mail_hostname: 'mx1' is not a lower-case fully qualified host name: it is a single label, not a fully "
        "qualified name (like mx1.example.org)",
        "mail_domains: must be a non-empty list of domain entries"]


def test_virtual_table_maps_mailboxes_aliases_and_catchalls():
    assert site.virtual_table(SITE["domains"], SITE["accounts"], SITE["aliases"], "vmail") == [
        ("@example.org", "info@example.org"),
        ("abuse@example.test", "postmaster@example.test"),
        ("alice@example.test", "vmail"),
        ("bob@example.org", "vmail"),
        ("info@example.org", "bob@example.org, friend@elsewhere.test"),
        ("postmaster@example.test", "alice@example.test"),
    ]


def test_credential_table_pairs_logins_with_hashes():
    assert site.credential_table(SITE["accounts"]) == [("alice@example.test", SHA512), ("bob@example.org", BCRYPT)]


def test_sender_table_grants_own_address_and_aliases_through_chains():
    assert site.sender_table(SITE["accounts"], SITE["aliases"]) == [
        ("alice@example.test", ["abuse@example.test", "alice@example.test", "postmaster@example.test"]),
        ("bob@example.org", ["bob@example.org", "info@example.org"]),
    ]


def test_sender_table_survives_an_alias_loop():
    aliases = {"a@example.test": ["b@example.test"], "b@example.test": ["a@example.test", "alice@example.test"]}
    assert site.sender_table(SITE["accounts"][:1], aliases) == [
        ("alice@example.test", ["a@example.test", "alice@example.test", "b@example.test"])]


@pytest.mark.parametrize("policy, message", [
    ({"dmarc": {"p": "block"}}, "mail_domains[1] (example.org).dmarc: DMARC p='block' is invalid"),
    ({"spf": "v=spf1 " + "a " * 11 + "-all"}, "mail_domains[1] (example.org).spf: SPF policy"),
    ({"tlsrpt_rua": ["not-an-address"]}, "mail_domains[1] (example.org).tlsrpt_rua: tlsrpt_rua entry"),
    ({"mta_sts": {"mode": "strict"}}, "mail_domains[1] (example.org).mta_sts: mode 'strict' is not one of"),
    ({"mta_sts": {"mode": "enforce", "max_age": 31557601}}, "mail_domains[1] (example.org).mta_sts: max_age"),
])
def test_unpublishable_dns_policy_is_named(policy, message):
    domains = [SITE["domains"][0], dict(SITE["domains"][1], **policy)]
    errors = errors_of(domains=domains)
    assert len(errors) == 1 and errors[0].startswith(message)


def test_mail_spf_include_of_domains_and_terms_is_sound():
    assert errors_of(spf_include=["spf.relay.example", "ip4:192.0.2.0/24", "a:smtp.relay.example"]) == []


@pytest.mark.parametrize("spf_include, message", [
    ("spf.relay.example", "mail_spf_include: must be a list"),
    (["ptr:relay.example"], "mail_spf_include: entry 0: 'ptr:relay.example' is not a domain (include:<domain>)"),
    (["ip4:192.0.2.300"], "mail_spf_include: entry 0: 'ip4:192.0.2.300': '192.0.2.300' is not an IPv4 address"),
])
def test_bad_mail_spf_include_is_named(spf_include, message):
    errors = errors_of(spf_include=spf_include)
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_mail_spf_include_counts_in_the_default_spf_of_each_domain():
    include = [f"s{i}.relay.example" for i in range(10)]
    errors = errors_of(spf_include=include)
    # Both domains publish the default record, which would need 11 lookups; a domain with its own spf does not.
    assert [e.split(":")[0] for e in errors] == ["mail_domains[0] (example.test).spf",
                                                 "mail_domains[1] (example.org).spf"]
    domains = [SITE["domains"][0], dict(SITE["domains"][1], spf="v=spf1 mx -all")]
    assert len(errors_of(spf_include=include, domains=domains)) == 1


@pytest.mark.parametrize("distribution, major, signer", [
    ("Debian", "13", "rspamd"), ("Debian", "14", "rspamd"), ("Debian", "12", "dkimproxy"),
    ("Alpine", "3", "dkimproxy"), ("Debian", "n/a", "dkimproxy"),
])
def test_default_dkim_signer_follows_the_platform(distribution, major, signer):
    assert site.default_dkim_signer(distribution, major) == signer
    assert site.dkim_signer_errors(signer, distribution, major) == []


@pytest.mark.parametrize("signer, major, message", [
    ("opendkim", "13", "'opendkim' is not one of dkimproxy, rspamd"),
    (None, "13", "None is not one of"),
    ("rspamd", "12", "rspamd cannot sign on Debian 12: its opensmtpd-filter-rspamd does not pass the "
                     "authenticated user"),
])
def test_unsupported_dkim_signers_are_refused(signer, major, message):
    assert message in site.dkim_signer_errors(signer, "Debian", major)[0]


RELAY = {"host": "smtp.provider.test", "port": 587, "username": "mx1@example.test", "password": "pa ss:word"}


@pytest.mark.parametrize("relayhost", [
    {}, None, RELAY, dict(RELAY, port=465, tls="smtps", ca_file="/etc/ssl/provider-ca.pem"), dict(RELAY, port="2525"),
    {"host": "smtp.provider.test"},
])
def test_sound_relayhosts(relayhost):
    assert errors_of(relayhost=relayhost) == []


@pytest.mark.parametrize("change, message", [
    ({"host": "smtp://smtp.provider.test"}, "host 'smtp://smtp.provider.test' has a scheme"),
    ({"host": "smtp.provider.test/relay"}, "host 'smtp.provider.test/relay' has a path"),
    ({"host": "smtp.provider.test:587"}, "has a port: give the host name only and the port in port"),
    ({"host": "provider"}, "host 'provider' is not a lower-case fully qualified host name"),
    ({"port": 0}, "port 0 is not a port number from 1 to 65535"),
    ({"port": 65536}, "port 65536 is not a port number"),
    ({"port": "58x"}, "port '58x' is not a port number"),
    ({"port": -25}, "port -25 is not a port number"),
    ({"tls": "none"}, "tls 'none' is not one of starttls, smtps (TLS is never off)"),
    ({"ca_file": "ca.pem"}, "ca_file 'ca.pem' is not an absolute path"),
    ({"user": "x"}, "unknown keys user"),
    ({"username": "a:b"}, "username must be a non-empty string without spaces or colons"),
    ({"password": ""}, "password must be a non-empty string of printable characters"),
    ({"password": "two\nlines"}, "password must be"),
    ({"password": None}, "username and password go together"),
])
def test_bad_relayhost_is_named_without_the_password(change, message):
    relayhost = {key: value for key, value in dict(RELAY, **change).items() if value is not None}
    errors = errors_of(relayhost=relayhost)
    assert len(errors) == 1 and errors[0].startswith("mail_relayhost: ") and message in errors[0], errors
    assert "pa ss:word" not in errors[0]


@pytest.mark.parametrize("factors, client_ca", [
    (["password"], ""), (["password", "client_certificate"], "/etc/ssl/clients-ca.pem"),
])
def test_sound_submission_auth(factors, client_ca):
    assert site.submission_auth_errors(factors, client_ca) == []


@pytest.mark.parametrize("factors, client_ca, message", [
    (["client_certificate"], "/etc/ssl/ca.pem", "without password, anyone holding a client certificate could send "
                                                "mail through this host as any of its users"),
    ([], "", "must be [password] or [password, client_certificate]"),
    (["password", "totp"], "", "'totp' is not one of password, client_certificate"),
    (["password", "client_certificate"], "", "no CA is set to verify it against"),
    (["password"], "/etc/ssl/ca.pem", "set, but opensmtpd_submission_auth does not ask for client_certificate"),
    (["password", "client_certificate"], "ca.pem", "'ca.pem' is not an absolute path"),
])
def test_weak_or_inconsistent_submission_auth_is_refused(factors, client_ca, message):
    errors = site.submission_auth_errors(factors, client_ca)
    assert any(message in error for error in errors), errors


def test_certificate_only_submission_is_called_an_open_relay():
    assert "open relay" in " ".join(site.submission_auth_errors(["client_certificate"], "/etc/ssl/ca.pem"))
