"""SPF policies evaluated by pyspf through the test BIND (tests/unit/named_server.py, zone spf.test) and nothing
else: lookups counted through includes, MX addresses that pass, an address that is not authorised."""

from __future__ import annotations

import dns.query
import pytest
from ansible_collections.opendove.mailserver.plugins.module_utils import _spf_live as live
from named_server import free_port

spf = pytest.importorskip("spf")


@pytest.fixture
def only_local(monkeypatch):
    """Every DNS query goes to 127.0.0.1 through the given resolvers: pyspf's own lookup (the system's resolver)
    fails the test, and the servers dnspython is asked are recorded."""
    asked = []

    def forbidden(*args, **kwargs):
        raise AssertionError(f"pyspf's own DNS lookup was used: {args}")

    for name in ("udp", "tcp"):
        original = getattr(dns.query, name)

        def recording(query, where, *args, _original=original, **kwargs):
            asked.append(where)
            return _original(query, where, *args, **kwargs)

        monkeypatch.setattr(dns.query, name, recording)
    monkeypatch.setattr(spf, "DNSLookup", forbidden)
    yield asked
    assert asked and set(asked) == {"127.0.0.1"}, asked
    assert spf.DNSLookup is forbidden, "pyspf's lookup was not put back"


def by_name(checks: list[dict]) -> dict[str, dict]:
    return {check["name"]: check for check in checks}


def test_mx_addresses_pass_through_the_published_record(named, only_local):
    checks = live.spf_checks("spf.test", None, ["192.0.2.10", "2001:db8::10"], [named], timeout=2)
    assert [check["name"] for check in checks] == ["SPF lookups", "SPF 192.0.2.10", "SPF 2001:db8::10"]
    assert all(check["status"] == "ok" for check in checks), checks
    # mx, include:relay.spf.test, and the include inside it.
    assert checks[0]["detail"].startswith("3 of at most 10 DNS lookups")


def test_an_address_included_two_levels_down_passes_and_another_fails(named, only_local):
    checks = by_name(live.spf_checks("spf.test", None, ["198.51.100.7", "2001:db8:25::1", "203.0.113.99"],
                                     [named], timeout=2))
    assert checks["SPF 198.51.100.7"]["status"] == "ok" and checks["SPF 2001:db8:25::1"]["status"] == "ok"
    assert checks["SPF 203.0.113.99"] == {"name": "SPF 203.0.113.99", "status": "fail",
                                          "detail": "fail: SPF fail - not authorized"}


def test_the_expected_record_is_evaluated_instead_of_the_published_one(named, only_local):
    # The default record without mail_spf_include: the MX host passes, the relay's address does not.
    checks = by_name(live.spf_checks("spf.test", "v=spf1 mx -all", ["192.0.2.10", "198.51.100.7"], [named],
                                     timeout=2))
    assert checks["SPF lookups"]["detail"].startswith("1 of at most 10")
    assert checks["SPF 192.0.2.10"]["status"] == "ok" and checks["SPF 198.51.100.7"]["status"] == "fail"
    softfail = live.spf_checks("soft.spf.test", None, ["203.0.113.99"], [named], timeout=2)[1]
    assert softfail["status"] == "fail" and softfail["detail"].startswith("softfail:")


def test_more_than_ten_lookups_through_includes_fail_though_the_top_level_has_three(named, only_local):
    checks = by_name(live.spf_checks("big.spf.test", None, ["192.0.2.10"], [named], timeout=2))
    assert checks["SPF lookups"]["status"] == "fail"
    assert checks["SPF lookups"]["detail"].startswith("more than 10 DNS lookups counted through include:")
    # The MX host matches at the first term, before the limit is reached: receivers still pass it.
    assert checks["SPF 192.0.2.10"]["status"] == "ok"
    address = by_name(live.spf_checks("big.spf.test", None, ["203.0.113.8"], [named], timeout=2))["SPF 203.0.113.8"]
    assert address["status"] == "fail" and "Too many DNS lookups" in address["detail"]


def test_an_include_without_a_record_and_a_domain_without_spf_fail(named, only_local):
    broken = live.spf_checks("broken.spf.test", None, [], [named], timeout=2)
    assert broken[0]["status"] == "fail" and broken[0]["detail"].startswith("permerror: ")
    assert "No valid SPF record for included domain: missing.spf.test" in broken[0]["detail"]
    none = live.spf_checks("h1.spf.test", None, ["192.0.2.10"], [named], timeout=2)
    assert none[0] == {"name": "SPF lookups", "status": "fail", "detail": "h1.spf.test publishes no SPF record"}
    assert none[1]["status"] == "fail" and none[1]["detail"].startswith("none:")


def test_a_silent_resolver_gives_a_temporary_error():
    # Nothing listens on the port.
    checks = live.spf_checks("spf.test", None, ["192.0.2.10"], [f"127.0.0.1#{free_port()}"], timeout=0.5)
    assert [check["status"] for check in checks] == ["fail", "fail"]
    assert checks[0]["detail"].startswith("temperror: ") and checks[1]["detail"].startswith("temperror: ")


@pytest.mark.parametrize("addresses, resolvers, message", [
    (["192.0.2.10"], [], "need the resolvers to ask"),
    (["192.0.2.10"], ["ns1.example.test"], "must be an IP address"),
    (["mx1.spf.test"], ["127.0.0.1"], "'mx1.spf.test' is not an IP address"),
])
def test_the_check_refuses_to_run_without_resolvers_or_with_a_bad_address(addresses, resolvers, message):
    with pytest.raises(live.SpfLiveError, match=message):
        live.spf_checks("spf.test", None, addresses, resolvers)
