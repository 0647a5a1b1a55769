"""engine.names: one normalized form of subject alternative names for tokens, CSRs and certs."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from cryptography import x509

from engine.errors import BadRequest
from engine.names import SAN, SANKind


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("svc.example.com", SANKind.DNS, "svc.example.com"),
        ("SVC.Example.COM", SANKind.DNS, "svc.example.com"),
        ("svc.example.com.", SANKind.DNS, "svc.example.com"),
        ("*.example.com", SANKind.DNS, "*.example.com"),
        ("localhost", SANKind.DNS, "localhost"),
        ("10.0.0.1", SANKind.IP, "10.0.0.1"),
        ("::1", SANKind.IP, "::1"),
        ("2001:DB8:0:0::1", SANKind.IP, "2001:db8::1"),
        ("Alice@Example.com", SANKind.EMAIL, "alice@example.com"),
        ("https://svc.example.com/path", SANKind.URI, "https://svc.example.com/path"),
        ("spiffe://example.org/device/1", SANKind.URI, "spiffe://example.org/device/1"),
        ("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", SANKind.URI, None),
        ("URN:ietf:params:x", SANKind.URI, "URN:ietf:params:x"),
    ],
)
def test_parse_classifies_and_normalizes_names(text: str, kind: SANKind, value: str | None) -> None:
    san = SAN.parse(text)
    assert san.kind is kind
    assert san.value == (value if value is not None else text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a..example.com",
        ".example.com",
        "svc example.com",
        "x" * 64 + ".example.com",
        "a." * 600,
        "bücher.de",  # must be given as an A-label (xn--bcher-kva.de)
        "https://bücher.de/",
        "jörg@example.com",
    ],
    ids=[
        "empty",
        "empty-label",
        "leading-dot",
        "space",
        "label-over-63",
        "over-1024",
        "unicode-dns",
        "unicode-uri",
        "unicode-email",
    ],
)
def test_parse_rejects_invalid_names(text: str) -> None:
    with pytest.raises(BadRequest):
        SAN.parse(text)


@pytest.mark.parametrize("value", [None, 42, b"svc.example.com", ["svc.example.com"]])
def test_parse_rejects_non_strings(value: Any) -> None:
    with pytest.raises(BadRequest):
        SAN.parse(value)


def test_a_label_is_accepted() -> None:
    assert SAN.parse("xn--bcher-kva.de") == SAN(SANKind.DNS, "xn--bcher-kva.de")


@pytest.mark.parametrize(
    "text",
    ["svc.example.com", "10.1.2.3", "fd00::5", "ops@example.com", "spiffe://example.org/x"],
)
def test_general_name_round_trip_preserves_the_san(text: str) -> None:
    san = SAN.parse(text)
    assert SAN.from_general_name(san.to_general_name()) == san


@pytest.mark.parametrize(
    ("general_name", "expected"),
    [
        (x509.DNSName("SVC.example.com."), SAN(SANKind.DNS, "svc.example.com")),
        (x509.RFC822Name("Ops@Example.com"), SAN(SANKind.EMAIL, "ops@example.com")),
        (
            x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
            SAN(SANKind.IP, "2001:db8::1"),
        ),
    ],
)
def test_names_from_certificates_normalize_like_names_from_tokens(
    general_name: x509.GeneralName, expected: SAN
) -> None:
    assert SAN.from_general_name(general_name) == expected


def test_unsupported_general_name_types_are_bad_requests() -> None:
    directory = x509.DirectoryName(x509.Name([]))
    with pytest.raises(BadRequest, match="DirectoryName"):
        SAN.from_general_name(directory)


def test_sans_sort_and_compare_by_kind_and_value() -> None:
    names = [SAN.parse("b.example.com"), SAN.parse("10.0.0.1"), SAN.parse("a.example.com")]
    assert sorted(names) == [
        SAN(SANKind.DNS, "a.example.com"),
        SAN(SANKind.DNS, "b.example.com"),
        SAN(SANKind.IP, "10.0.0.1"),
    ]
    assert SAN.parse("A.example.com") == SAN.parse("a.example.com")


@pytest.mark.parametrize(
    "name",
    [
        "foo/bar",
        "a:b",
        "-lead.example",
        "trail-.example",
        "a..b",
        "*.com",
        "a.*.example",
        "x" * 64 + ".example",
    ],
)
def test_malformed_dns_names_are_refused(name: str) -> None:
    with pytest.raises(BadRequest):
        SAN.parse(name)


@pytest.mark.parametrize(
    "name", ["_acme-challenge.example.com", "*.example.com", "xn--bcher-kva.de", "a-b.example"]
)
def test_valid_dns_names_are_accepted(name: str) -> None:
    assert SAN.parse(name).value == name


@pytest.mark.parametrize(
    "text", ["a(b@example.com", "[dmin@example.com", "Alice <a@example.com>", "a@b@example.com"]
)
def test_an_email_x509_cannot_encode_is_refused(text: str) -> None:
    # rfc822Name holds an address alone: no display name, comment or second "@".
    with pytest.raises(BadRequest, match="invalid email address"):
        SAN.parse(text)


def test_a_plain_email_is_still_an_email() -> None:
    san = SAN.parse("First.Last+tag@Example.com")
    assert san.kind is SANKind.EMAIL and san.value == "first.last+tag@example.com"
    assert x509.RFC822Name(san.value)
