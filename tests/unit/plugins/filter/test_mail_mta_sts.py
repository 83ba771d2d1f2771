"""The MTA-STS filters return the policies and the names a certificate misses; errors become filter errors."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.opendove.mailserver.plugins.filter.mail_mta_sts import FilterModule

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
