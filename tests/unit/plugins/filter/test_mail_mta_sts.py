"""The MTA-STS filters return the policies and the names a certificate misses; errors become filter errors."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.opendove.mailserver.plugins.filter.mail_mta_sts import FilterModule
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import domain_records

FILTERS = FilterModule().filters()


def test_policies_for_the_domains_that_ask():
    result = FILTERS["mail_mta_sts_policies"]([{"name": "a.test", "mta_sts": {"mode": "testing"}}, {"name": "b.test"}],
                                              ["mx1.a.test"])
    assert [(p["host"], p["text"].splitlines()[1]) for p in result] == [("mta-sts.a.test", "mode: testing")]


def test_bad_settings_become_filter_errors():
    with pytest.raises(AnsibleFilterError, match="MTA-STS: mode 'on'"):
        FILTERS["mail_mta_sts_policies"]([{"name": "a.test", "mta_sts": {"mode": "on"}}], ["mx1.a.test"])


def test_names_not_covered():
    assert FILTERS["mail_names_not_covered"](["DNS:mta-sts.a.test"], ("mta-sts.a.test", "mta-sts.b.test")) == [
        "mta-sts.b.test"]


def test_listed_names_replace_the_mx_hosts_and_the_dns_record_carries_the_same_id():
    domain = {"name": "a.test", "mta_sts": {"mode": "enforce"}}
    hosts = [{"hostname": "mx1.a.test", "priority": 10, "addresses": ["192.0.2.1"]}]
    served = FILTERS["mail_mta_sts_policies"]([domain], ["mx1.a.test"], ["mx.backup.test"])[0]
    assert "mx: mx.backup.test\r\n" in served["text"] and "mx1.a.test" not in served["text"]
    published = [r for r in domain_records(domain, hosts, [], policy_mx=["mx.backup.test"])
                 if r["name"] == "_mta-sts.a.test."]
    assert [r["values"] for r in published] == [[[f"v=STSv1; id={served['id']}"]]]
    # Nothing listed: both fall back to every MX host.
    assert FILTERS["mail_mta_sts_policies"]([domain], ["mx1.a.test"], [])[0]["id"] != served["id"]
