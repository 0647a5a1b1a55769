"""Which identifiers are validated and which addresses are contacted: denied networks
(cloud metadata by default), private addresses when they are not allowed, and
identifiers no challenge accepts; a refused address is never dialled."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

from hosts.validation import DEFAULT_DENY, ValidationConfig
from hosts.validation.dns01 import validate_dns01
from hosts.validation.http01 import validate_http01
from hosts.validation.policy import denied
from hosts.validation.tlsalpn01 import validate_tlsalpn01

from .servers import KEYAUTH, TOKEN, config_for, problem_of

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.challtestsrv import ChallTestSrv

pytest_plugins = ["tests.challtestsrv"]


@pytest.mark.parametrize(
    ("identifier_type", "value", "found"),
    [
        ("ip", "169.254.169.254", "denied network 169.254.0.0/16"),
        ("ip", "fe80::1", "denied network fe80::/10"),
        ("ip", "fd00:ec2::254", "denied network fd00:ec2::254/128"),
        ("ip", "::ffff:169.254.169.254", "denied network 169.254.0.0/16"),
        ("ip", "64:ff9b::a9fe:a9fe", "denied network 169.254.0.0/16"),
        ("ip", "0.0.0.0", "unspecified"),
        ("dns", "meta.devid.test", "denied network 169.254.0.0/16"),
        ("dns", "alias.devid.test", "denied network 169.254.0.0/16"),  # CNAME to meta
    ],
)
async def test_denied_addresses_are_never_contacted(
    challtestsrv: ChallTestSrv,
    dialed: list[tuple[str, int]],
    identifier_type: str,
    value: str,
    found: str,
) -> None:
    challtestsrv.add_a("meta.devid.test", ["169.254.169.254"])
    challtestsrv.set_cname("alias.devid.test", "meta.devid.test")
    config = config_for(challtestsrv)
    calls: list[Callable[[], Awaitable[None]]] = [
        lambda: validate_http01(identifier_type, value, TOKEN, KEYAUTH, config),
        lambda: validate_tlsalpn01(identifier_type, value, KEYAUTH, config),
    ]
    for call in calls:
        err = await problem_of(call())
        assert err.problem == "connection"
        assert "refusing to connect" in err.detail
        assert found in err.detail
    assert dialed == []


@pytest.mark.parametrize(
    ("identifier_type", "value"), [("ip", "127.0.0.1"), ("ip", "10.1.2.3"), ("dns", "x.devid.test")]
)
async def test_private_addresses_refused_when_not_allowed(
    challtestsrv: ChallTestSrv, dialed: list[tuple[str, int]], identifier_type: str, value: str
) -> None:
    config = config_for(challtestsrv, allow_private=False)
    err = await problem_of(validate_http01(identifier_type, value, TOKEN, KEYAUTH, config))
    assert err.problem == "connection"
    assert "private addresses are not allowed" in err.detail
    assert dialed == []


async def test_custom_deny_list(challtestsrv: ChallTestSrv, dialed: list[tuple[str, int]]) -> None:
    config = config_for(challtestsrv, deny_networks=("127.0.0.0/8",))
    err = await problem_of(validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config))
    assert err.problem == "connection"
    assert "denied network 127.0.0.0/8" in err.detail
    assert dialed == []


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda s: validate_dns01("127.0.0.1", KEYAUTH, s), "rejectedIdentifier"),
        (lambda s: validate_dns01("bad name.test", KEYAUTH, s), "rejectedIdentifier"),
        (
            lambda s: validate_http01("dns", "*.x.devid.test", TOKEN, KEYAUTH, s),
            "rejectedIdentifier",
        ),
        (lambda s: validate_http01("dns", "127.0.0.1", TOKEN, KEYAUTH, s), "rejectedIdentifier"),
        (
            lambda s: validate_http01("email", "a@b.test", TOKEN, KEYAUTH, s),
            "unsupportedIdentifier",
        ),
        (lambda s: validate_http01("ip", "not-an-ip", TOKEN, KEYAUTH, s), "rejectedIdentifier"),
        (lambda s: validate_http01("dns", "x.devid.test", "../etc", KEYAUTH, s), "malformed"),
        (lambda s: validate_tlsalpn01("dns", "*.x.devid.test", KEYAUTH, s), "rejectedIdentifier"),
    ],
)
async def test_bad_identifiers(dialed: list[tuple[str, int]], call: Any, problem: str) -> None:
    err = await problem_of(call(ValidationConfig(dns_resolver=("127.0.0.1", 9), timeout=2.0)))
    assert err.problem == problem
    assert dialed == []


# --- cloud metadata endpoints are refused by default -------------------------------------

METADATA = [
    "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack...
    "100.100.100.200",  # Alibaba Cloud
    "168.63.129.16",  # Azure wireserver
    "fd00:ec2::254",  # AWS IPv6
    "fd20:ce::254",  # GCP IPv6
    "fe80::a9fe:a9fe",  # link-local IPv6
    "::ffff:100.100.100.200",
    "::ffff:168.63.129.16",
]


@pytest.mark.parametrize("address", METADATA)
def test_metadata_addresses_are_denied_by_default(address: str) -> None:
    addr = ipaddress.ip_address(address)
    reason = denied(addr, deny_networks=DEFAULT_DENY, allow_private=True)
    assert reason is not None and "denied network" in reason
    config = ValidationConfig.from_table({})
    from_config = denied(addr, deny_networks=config.deny_networks, allow_private=True)
    assert from_config is not None


@pytest.mark.parametrize("address", ["100.100.100.200", "168.63.129.16", "fd20:ce::254"])
async def test_new_metadata_addresses_are_never_contacted(
    challtestsrv: ChallTestSrv, dialed: list[tuple[str, int]], address: str
) -> None:
    if ":" in address:  # A records too, or the name would resolve to the default 127.0.0.1
        challtestsrv.add_aaaa("cloud.devid.test", [address])
        challtestsrv.add_a("cloud.devid.test", ["100.100.100.200"])
    else:
        challtestsrv.add_a("cloud.devid.test", [address])
    config = config_for(challtestsrv)
    for identifier_type, value in (("ip", address), ("dns", "cloud.devid.test")):
        err = await problem_of(validate_http01(identifier_type, value, TOKEN, KEYAUTH, config))
        assert err.problem == "connection"
        assert "refusing to connect" in err.detail
        assert f"{address} in denied network" in err.detail
        err = await problem_of(validate_tlsalpn01(identifier_type, value, KEYAUTH, config))
        assert f"{address} in denied network" in err.detail
    assert dialed == []
