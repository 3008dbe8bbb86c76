"""Resolver rules that need no agent: TTL wildcards, RFC 1464 meta text, reverse names."""

from __future__ import annotations

import ipaddress

import pytest

from proconsul.dns.resolver import DNSSettings, _reverse_ip, encode_meta


def test_service_ttl_exact_then_longest_prefix_then_star() -> None:
    s = DNSSettings(service_ttl={"web": 5, "we*": 4, "w*": 3, "*": 2})
    assert s.service_ttl_for("web") == 5
    assert s.service_ttl_for("webby") == 4
    assert s.service_ttl_for("wall") == 3
    assert s.service_ttl_for("db") == 2
    assert DNSSettings().service_ttl_for("db") == 0


@pytest.mark.parametrize(("key", "value", "text"), [
    ("rack", "r1", "rack=r1"),
    ("a=b", "v", "a`=b=v"),
    ("tick`", "v", "tick``=v"),
    (" lead", "v", "` lead=v"),
    ("trail ", "v", "trail` =v"),
    ("rfc1035-raw", "anything = goes", "anything = goes"),
    ("empty", "", "empty="),
])
def test_meta_as_rfc1464(key: str, value: str, text: str) -> None:
    assert encode_meta(key, value) == text


def test_reverse_names() -> None:
    assert _reverse_ip("5.0.0.10.in-addr.arpa") == ipaddress.ip_address("10.0.0.5")
    assert _reverse_ip("0.0.10.in-addr.arpa") is None
    assert _reverse_ip("300.0.0.10.in-addr.arpa") is None
    v6 = ipaddress.ip_address("2001:db8::5")
    nibbles = ".".join(reversed(v6.packed.hex()))
    assert _reverse_ip(nibbles + ".ip6.arpa") == v6
    assert _reverse_ip("1.2.ip6.arpa") is None
