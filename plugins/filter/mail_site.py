# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filters over the site model; the logic lives in module_utils/_site_model.py."""

from __future__ import annotations

from ansible_collections.opendove.mailserver.plugins.module_utils._site_model import (
    credential_table,
    default_dkim_signer,
    dkim_signer_errors,
    sender_table,
    submission_auth_errors,
    validate_site,
    virtual_table,
)


def mail_site_errors(hostname, domains, accounts, aliases, tls_certificate, tls_private_key, relayhost=None,
                     password_hash_max_cost=None, spf_include=None):
    """Every problem of the site model as a list of messages; empty when it is sound. password_hash_max_cost:
    mail_password_hash_max_cost (None or {}: the default limits); spf_include: mail_spf_include."""
    return validate_site(hostname, domains, accounts, aliases, tls_certificate, tls_private_key, relayhost,
                         password_hash_max_cost, spf_include)


def mail_submission_auth_errors(factors, client_ca):
    """Why submission clients could get in with too little (or the settings do not fit); empty when sound."""
    return submission_auth_errors(factors, client_ca)


def mail_virtual_table(domains, accounts, aliases, vmail_user):
    """Rows [key, value] of OpenSMTPD's virtual table: mailboxes, aliases and catch-alls."""
    return [list(row) for row in virtual_table(domains, accounts, aliases, vmail_user)]


def mail_credential_table(accounts):
    """Rows [login, crypt hash] of OpenSMTPD's credentials table."""
    return [list(row) for row in credential_table(accounts)]


def mail_sender_table(accounts, aliases):
    """Rows [login, [addresses]] of OpenSMTPD's senders table."""
    return [[login, allowed] for login, allowed in sender_table(accounts, aliases)]


def mail_default_dkim_signer(facts):
    """The DKIM signer of the platform these host facts describe."""
    return default_dkim_signer(facts["distribution"], facts["distribution_major_version"])


def mail_dkim_signer_errors(signer, facts):
    """Why this signer cannot sign on the platform these host facts describe; empty when it can."""
    return dkim_signer_errors(signer, facts["distribution"], facts["distribution_major_version"])


class FilterModule:
    """opendove.mailserver site model filters."""

    def filters(self):
        return {
            "mail_site_errors": mail_site_errors,
            "mail_virtual_table": mail_virtual_table,
            "mail_credential_table": mail_credential_table,
            "mail_sender_table": mail_sender_table,
            "mail_default_dkim_signer": mail_default_dkim_signer,
            "mail_dkim_signer_errors": mail_dkim_signer_errors,
            "mail_submission_auth_errors": mail_submission_auth_errors,
        }
