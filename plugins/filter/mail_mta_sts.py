# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filters for MTA-STS; the logic lives in module_utils/_mta_sts.py and _names.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.opendove.mailserver.plugins.module_utils._mta_sts import MtaStsError, policies, policy_mx
from ansible_collections.opendove.mailserver.plugins.module_utils._names import names_not_covered


def mail_mta_sts_policies(domains, mx_hosts, listed=None):
    """[{domain, host, text, id}]: the policy each domain with an `mta_sts` entry serves, listing the names in
    listed, or when it is empty every name in mx_hosts."""
    try:
        return policies(domains, policy_mx(listed, mx_hosts))
    except MtaStsError as exc:
        raise AnsibleFilterError(f"MTA-STS: {exc}") from exc


def mail_names_not_covered(subject_alt_names, names):
    """The names a certificate (its subject_alt_name list, from community.crypto.x509_certificate_info)
    is not valid for."""
    return names_not_covered(subject_alt_names, list(names))


class FilterModule:
    """opendove.mailserver MTA-STS filters."""

    def filters(self):
        return {"mail_mta_sts_policies": mail_mta_sts_policies, "mail_names_not_covered": mail_names_not_covered}
