"""engine.acme.identifiers: parsing, normalising, and the provisioner's identifier policy."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from engine.acme.identifiers import (
    Identifier,
    IdentifierPolicy,
    parse_identifiers,
)
from engine.acme.problems import ACMEProblem

NETWORK = frozenset({"http-01", "dns-01", "tls-alpn-01"})
POLICY = IdentifierPolicy(
    challenges=NETWORK,
    allowed_domains=("example.com", ".internal"),
    allowed_ip_ranges=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")),
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"type": "dns", "value": "WWW.Example.COM"}, Identifier("dns", "www.example.com")),
        ({"type": "dns", "value": "*.example.com"}, Identifier("dns", "*.example.com")),
        ({"type": "ip", "value": "10.0.0.1"}, Identifier("ip", "10.0.0.1")),
        ({"type": "ip", "value": "FD00:0::1"}, Identifier("ip", "fd00::1")),
        (
            {"type": "permanent-identifier", "value": "abc_DEF-123"},
            Identifier("permanent-identifier", "abc_DEF-123"),
        ),
        ({"type": "hardware-module", "value": "SN 42"}, Identifier("hardware-module", "SN 42")),
    ],
)
def test_identifiers_are_normalised(given: dict[str, str], expected: Identifier) -> None:
    assert Identifier.from_json(given) == expected


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("www.example.com", "malformed"),
        ({"type": "dns"}, "malformed"),
        ({"type": "dns", "value": ""}, "malformed"),
        ({"type": "dns", "value": 5}, "malformed"),
        ({"type": "email", "value": "a@example.com"}, "unsupportedIdentifier"),
        ({"type": "dns", "value": "example.com."}, "rejectedIdentifier"),
        ({"type": "dns", "value": " example.com"}, "rejectedIdentifier"),
        ({"type": "dns", "value": "10.0.0.1"}, "rejectedIdentifier"),
        ({"type": "dns", "value": "a.*.example.com"}, "rejectedIdentifier"),
        ({"type": "dns", "value": "bücher.example.com"}, "rejectedIdentifier"),
        ({"type": "dns", "value": "-bad.example.com"}, "rejectedIdentifier"),
        ({"type": "ip", "value": "10.0.0.256"}, "rejectedIdentifier"),
        ({"type": "ip", "value": "fe80::1%eth0"}, "rejectedIdentifier"),
        ({"type": "permanent-identifier", "value": "x" * 257}, "rejectedIdentifier"),
        ({"type": "permanent-identifier", "value": "tab\there"}, "rejectedIdentifier"),
    ],
)
def test_bad_identifiers(given: Any, problem: str) -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        Identifier.from_json(given)
    assert excinfo.value.problem == problem


def test_wildcards_authorize_their_base_name() -> None:
    wildcard = Identifier("dns", "*.example.com")
    assert wildcard.wildcard
    assert wildcard.authorization_form() == Identifier("dns", "example.com")
    assert not Identifier("dns", "example.com").wildcard


def test_a_list_drops_duplicates_and_keeps_the_order() -> None:
    parsed = parse_identifiers(
        [
            {"type": "dns", "value": "b.example.com"},
            {"type": "dns", "value": "A.example.com"},
            {"type": "dns", "value": "B.EXAMPLE.COM"},
        ]
    )
    assert [i.value for i in parsed] == ["b.example.com", "a.example.com"]


def test_all_bad_identifiers_of_a_list_are_reported() -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        parse_identifiers(
            [
                {"type": "dns", "value": "ok.example.com"},
                {"type": "email", "value": "x@example.com"},
                {"type": "dns", "value": "bad..example.com"},
            ]
        )
    problem = excinfo.value
    assert problem.problem == "compound"
    assert [s.type for s in problem.subproblems] == ["unsupportedIdentifier", "rejectedIdentifier"]
    assert problem.subproblems[1].identifier == {"type": "dns", "value": "bad..example.com"}


@pytest.mark.parametrize("given", [[], "x", [{"type": "dns", "value": "a.example.com"}] * 101])
def test_lists_of_the_wrong_size_or_shape(given: Any) -> None:
    with pytest.raises(ACMEProblem):
        parse_identifiers(given)


@pytest.mark.parametrize(
    ("identifier", "challenges"),
    [
        (Identifier("dns", "www.example.com"), ("http-01", "dns-01", "tls-alpn-01")),
        (Identifier("dns", "*.example.com"), ("dns-01",)),
        (Identifier("ip", "10.1.2.3"), ("http-01", "tls-alpn-01")),
        (Identifier("permanent-identifier", "x"), ()),
    ],
)
def test_challenges_offered_per_identifier(
    identifier: Identifier, challenges: tuple[str, ...]
) -> None:
    assert POLICY.challenge_types(identifier) == challenges


@pytest.mark.parametrize(
    ("identifier", "allowed"),
    [
        (Identifier("dns", "example.com"), True),
        (Identifier("dns", "a.b.example.com"), True),
        (Identifier("dns", "*.example.com"), True),
        (Identifier("dns", "host.internal"), True),
        (Identifier("dns", "badexample.com"), False),
        (Identifier("dns", "example.com.evil.test"), False),
        (Identifier("ip", "10.255.0.1"), True),
        (Identifier("ip", "11.0.0.1"), False),
        (Identifier("ip", "fd12::1"), True),
        (Identifier("ip", "::1"), False),
    ],
)
def test_domains_are_suffixes_and_addresses_ranges(identifier: Identifier, allowed: bool) -> None:
    if allowed:
        POLICY.check(identifier)
    else:
        with pytest.raises(ACMEProblem) as excinfo:
            POLICY.check(identifier)
        assert excinfo.value.problem == "rejectedIdentifier"


def test_star_allows_any_name_but_no_address() -> None:
    policy = IdentifierPolicy(challenges=NETWORK, allowed_domains=("*",))
    policy.check(Identifier("dns", "anything.test"))
    with pytest.raises(ACMEProblem):
        policy.check(Identifier("ip", "192.0.2.1"))


def test_nothing_is_allowed_by_default() -> None:
    policy = IdentifierPolicy(challenges=NETWORK)
    with pytest.raises(ACMEProblem):
        policy.check(Identifier("dns", "www.example.com"))


def test_a_wildcard_needs_dns01() -> None:
    policy = IdentifierPolicy(challenges=frozenset({"http-01"}), allowed_domains=("*",))
    with pytest.raises(ACMEProblem, match="dns-01") as excinfo:
        policy.check(Identifier("dns", "*.example.com"))
    assert excinfo.value.problem == "rejectedIdentifier"


def test_device_identifiers_need_device_attest() -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        POLICY.check(Identifier("permanent-identifier", "abc"))
    assert excinfo.value.problem == "unsupportedIdentifier"
    devices = IdentifierPolicy(challenges=frozenset({"device-attest-01"}))
    devices.check(Identifier("permanent-identifier", "abc"))
    devices.check(Identifier("hardware-module", "SN1"))
    with pytest.raises(ACMEProblem) as excinfo:
        devices.check(Identifier("dns", "www.example.com"))
    assert excinfo.value.problem == "unsupportedIdentifier"


def test_a_device_identifier_is_alone_in_its_order() -> None:
    devices = IdentifierPolicy(challenges=frozenset({"device-attest-01"}))
    with pytest.raises(ACMEProblem) as excinfo:
        devices.check_order(
            [Identifier("permanent-identifier", "a"), Identifier("permanent-identifier", "b")]
        )
    assert excinfo.value.problem == "rejectedIdentifier"


def test_an_order_reports_every_refusal_as_a_subproblem() -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        POLICY.check_order(
            [
                Identifier("dns", "ok.example.com"),
                Identifier("dns", "no.test"),
                Identifier("permanent-identifier", "dev"),
            ]
        )
    problem = excinfo.value
    assert problem.problem == "compound"
    assert [(s.type, s.identifier) for s in problem.subproblems] == [
        ("rejectedIdentifier", {"type": "dns", "value": "no.test"}),
        ("unsupportedIdentifier", {"type": "permanent-identifier", "value": "dev"}),
        ("rejectedIdentifier", {"type": "permanent-identifier", "value": "dev"}),  # not alone
    ]
    body = problem.to_json()
    assert body["subproblems"][0]["type"] == "urn:ietf:params:acme:error:rejectedIdentifier"
