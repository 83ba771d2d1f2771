"""The filters hand the site model to module_utils and return plain lists templates can use."""

from ansible_collections.opendove.mailserver.plugins.filter.mail_site import FilterModule

FILTERS = FilterModule().filters()
HASH = "$6$M89SwZdOBVCxPkgO$1oFVYkzc3vttm45JdFht7gMT16SI6bnSZObF572mPis2.rn/ePa4.YG4uMt8QEhGzZijwrGLvXWLjOkyx35Vs/"
DOMAINS = [{"name": "example.test", "catchall": "alice@example.test"}]
ACCOUNTS = [{"address": "alice@example.test", "password_hash": HASH}]
ALIASES = {"postmaster@example.test": ["alice@example.test"]}


def test_every_filter_is_registered():
    assert set(FILTERS) == {"mail_site_errors", "mail_virtual_table", "mail_credential_table", "mail_sender_table",
                            "mail_default_dkim_signer", "mail_dkim_signer_errors", "mail_submission_auth_errors"}


def test_dkim_signer_filters_read_the_host_facts():
    trixie = {"distribution": "Debian", "distribution_major_version": "13"}
    bookworm = {"distribution": "Debian", "distribution_major_version": "12"}
    assert FILTERS["mail_default_dkim_signer"](trixie) == "rspamd"
    assert FILTERS["mail_dkim_signer_errors"]("rspamd", trixie) == []
    assert "cannot sign on Debian 12" in FILTERS["mail_dkim_signer_errors"]("rspamd", bookworm)[0]


def test_mail_site_errors_returns_messages():
    assert FILTERS["mail_site_errors"]("mx1.example.test", DOMAINS, ACCOUNTS, ALIASES, "/c.pem", "/k.pem") == []
    assert FILTERS["mail_site_errors"]("mx1", DOMAINS, ACCOUNTS, ALIASES, "/c.pem", "/k.pem") == [
        "mail_hostname: 'mx1' is not a lower-case fully qualified host name: it is a single label, not a fully "
        "qualified name (like mx1.example.org)"]


def test_mail_site_errors_takes_the_cost_limits():
    assert FILTERS["mail_site_errors"]("mx1.example.test", DOMAINS, ACCOUNTS, ALIASES, "/c.pem", "/k.pem", {},
                                       {"sha512_crypt_rounds": 5000}) == []
    errors = FILTERS["mail_site_errors"]("mx1.example.test", DOMAINS, ACCOUNTS, ALIASES, "/c.pem", "/k.pem", {},
                                         {"sha512_crypt_rounds": 1000})
    assert len(errors) == 1 and errors[0].startswith(
        "mail_accounts[0] (alice@example.test): password_hash is a SHA512-crypt hash of 5000 rounds, above the limit "
        "of 1000 (mail_password_hash_max_cost.sha512_crypt_rounds)")


def test_table_filters_return_lists_of_rows():
    assert FILTERS["mail_virtual_table"](DOMAINS, ACCOUNTS, ALIASES, "vmail") == [
        ["@example.test", "alice@example.test"],
        ["alice@example.test", "vmail"],
        ["postmaster@example.test", "alice@example.test"],
    ]
    assert FILTERS["mail_credential_table"](ACCOUNTS) == [["alice@example.test", HASH]]
    assert FILTERS["mail_sender_table"](ACCOUNTS, ALIASES) == [
        ["alice@example.test", ["alice@example.test", "postmaster@example.test"]]]
