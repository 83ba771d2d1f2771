"""The DNS filters return records and zone fragments, and turn record errors into filter errors."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.opendove.mailserver.plugins.filter.mail_dns import FilterModule

FILTERS = FilterModule().filters()
MX = [{"hostname": "mx1.example.test", "priority": 10}]


def test_records_and_zone_per_domain():
    rings = [{"example.test": {"publish": [{"selector": "s1", "key_type": "rsa", "public_key": "AB"},
                                           {"selector": "s3", "key_type": "rsa", "public_key": None}]}},
             {"example.test": {"publish": [{"selector": "s2", "key_type": "ed25519", "public_key": "CD"}]}}]
    result = FILTERS["mail_dns_records"]([{"name": "example.test"}, {"name": "example.org"}], MX, rings, 300)
    assert sorted(result) == ["example.org", "example.test"]
    assert "s1._domainkey.example.test.\t300\tIN\tTXT\t\"v=DKIM1; k=rsa; h=sha256; t=s; p=AB\"" in \
        result["example.test"]["zone"]
    assert "s2._domainkey.example.test.\t300\tIN\tTXT\t\"v=DKIM1; k=ed25519; h=sha256; t=s; p=CD\"" in \
        result["example.test"]["zone"]
    assert "s3._domainkey" not in result["example.test"]["zone"]
    assert "_domainkey" not in result["example.org"]["zone"]


def test_record_errors_become_filter_errors():
    with pytest.raises(AnsibleFilterError, match="DMARC p='maybe' is invalid"):
        FILTERS["mail_dns_records"]([{"name": "example.test", "dmarc": {"p": "maybe"}}], MX, [])
    with pytest.raises(AnsibleFilterError):
        FILTERS["mail_host_records"]([{"hostname": "mx1.example.test", "addresses": ["not-an-address"]}])


def test_host_records_of_every_mx_host():
    result = FILTERS["mail_host_records"]([{"hostname": "mx1.example.test", "addresses": ["192.0.2.1"]},
                                          {"hostname": "mx2.example.test", "addresses": ["192.0.2.2"]}], 60)
    assert [(r["name"], r["type"]) for r in result["records"]] == [
        ("mx1.example.test.", "A"), ("1.2.0.192.in-addr.arpa.", "PTR"),
        ("mx2.example.test.", "A"), ("2.2.0.192.in-addr.arpa.", "PTR")]
    assert "2.2.0.192.in-addr.arpa.\t60\tIN\tPTR\tmx2.example.test.\n" in result["zone"]
