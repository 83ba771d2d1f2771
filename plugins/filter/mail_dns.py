# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filters that compute DNS records; the logic lives in module_utils/_dns_records.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import (
    DnsRecordError,
    domain_records,
    host_records,
    zone_fragment,
)


def mail_dns_records(domains, mx_hosts, dkim_rings, ttl=3600, policy_mx=None):
    """Per domain name: its records and a zone fragment.

    mx_hosts: [{hostname, priority, addresses}]; dkim_rings: the `domains` result of
    opendove.mailserver.dkim_keys of each host, {domain: {publish: [{selector, key_type, public_key}]}}. Keys
    not made yet (no public key, as check mode predicts them) are left out. policy_mx: the MX names the
    MTA-STS policies list (default: the mx_hosts' names).
    """
    try:
        result = {}
        for domain in domains:
            keys = [key for ring in dkim_rings for key in ring.get(domain["name"], {}).get("publish", [])
                    if key.get("public_key") is not None]
            records = domain_records(domain, mx_hosts, keys, ttl, policy_mx)
            result[domain["name"]] = {"records": records, "zone": zone_fragment(records)}
        return result
    except DnsRecordError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def mail_host_records(mx_hosts, ttl=3600):
    """The A/AAAA records of the MX hosts ([{hostname, addresses}]) and the PTR record each address needs."""
    try:
        records = [record for host in mx_hosts for record in host_records(host["hostname"], host["addresses"], ttl)]
    except (DnsRecordError, ValueError) as exc:
        raise AnsibleFilterError(str(exc)) from exc
    return {"records": records, "zone": zone_fragment(records)}


class FilterModule:
    """opendove.mailserver DNS record filters."""

    def filters(self):
        return {"mail_dns_records": mail_dns_records, "mail_host_records": mail_host_records}
