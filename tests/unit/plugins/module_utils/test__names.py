"""Unit tests of the certificate name check."""

from __future__ import annotations

import pytest
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
