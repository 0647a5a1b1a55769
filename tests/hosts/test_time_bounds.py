"""Requested validity and durations from clients (both hosts): a clear 400, never a
post-dated certificate and never a 500.

- ``notBefore`` at ``/1.0/sign`` and in an ACME newOrder must be within the
  provisioner's ``durations.skew`` (default 5m) of the CA's clock;
- times and durations beyond the calendar (``"0001-01-01T00:00:00+01:00"``,
  ``10**20`` seconds of account validity) are refused as bad requests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from tests.conftest import CA, RunningServer, new_csr

from .account_helpers import admin
from .acme_helpers import acme_client, acme_server_fixture, assert_problem  # noqa: F401
from .helpers import assert_json_error, client, load_pem


def _rfc3339(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


async def sign(server: RunningServer, subject: str, **bounds: Any) -> Any:
    _, _, csr_pem = new_csr(subject)
    async with client(server) as http:
        return await http.post(
            "/1.0/sign", json={"csr": csr_pem, "ott": server.token(subject), **bounds}
        )


@pytest.mark.parametrize(
    ("bounds", "said"),
    [
        ({"notBefore": "8760h"}, "more than 5m ahead"),
        ({"notBefore": "8760h", "notAfter": "8784h"}, "more than 5m ahead"),
        ({"notBefore": "6m"}, "more than 5m ahead"),
        ({"notBefore": _rfc3339(timedelta(days=365))}, "more than 5m ahead"),
        ({"notBefore": "-8760h", "notAfter": "1h"}, "more than 5m in the past"),
        ({"notBefore": _rfc3339(-timedelta(hours=1))}, "more than 5m in the past"),
    ],
)
async def test_sign_refuses_a_not_before_outside_the_skew(
    server: RunningServer, bounds: dict[str, str], said: str
) -> None:
    count = server.authority.stores.certificates.count_certificates()
    r = await sign(server, "postdated.example.com", **bounds)
    message = assert_json_error(r, 400)["message"]
    assert said in message and "notBefore" in message
    assert server.authority.stores.certificates.count_certificates() == count


@pytest.mark.parametrize("not_before", ["2m", "-2m", "0s"])
async def test_sign_accepts_a_small_skew(server: RunningServer, not_before: str) -> None:
    r = await sign(server, "skewed.example.com", notBefore=not_before)
    assert r.status_code == 201, r.text
    cert = load_pem(r.json()["crt"])
    offset = cert.not_valid_before_utc - datetime.now(UTC)
    assert abs(offset) <= timedelta(minutes=3)


@pytest.mark.parametrize(
    "bounds",
    [
        {"notBefore": "0001-01-01T00:00:00+01:00"},
        {"notAfter": "9999-12-31T23:59:59-01:00"},
        {"notAfter": "99999999999999999999d"},
        {"notBefore": "-999999999d"},
        {"notAfter": "9" * 400 + "h"},
    ],
)
async def test_sign_refuses_times_beyond_the_calendar(
    server: RunningServer, bounds: dict[str, str]
) -> None:
    r = await sign(server, "calendar.example.com", **bounds)
    assert_json_error(r, 400)


@pytest.mark.parametrize(
    ("validity", "said"),
    [
        (10**20, "validity must be between"),
        (-(10**20), "validity must be between"),
        (2**63, "validity must be between"),
        ("1e20h", "invalid duration"),
        ("99999999999999999999d", "out of range"),
    ],
)
async def test_account_validity_out_of_range_is_a_bad_request(
    server: RunningServer, ca: CA, validity: Any, said: str
) -> None:
    async with admin(server, ca) as http:
        created = await http.post(
            "/api/v1/accounts", json={"name": "huge", "type": "wifi", "validity": validity}
        )
        ok = await http.post("/api/v1/accounts", json={"name": "fine", "type": "wifi"})
        patched = await http.patch("/api/v1/accounts/fine", json={"validity": validity})
    assert said in assert_json_error(created, 400)["message"]
    assert ok.status_code == 201, ok.text
    assert said in assert_json_error(patched, 400)["message"]


@pytest.mark.parametrize(
    ("bounds", "said"),
    [
        ({"notBefore": _rfc3339(timedelta(days=365))}, "more than 5m ahead"),
        ({"notBefore": _rfc3339(timedelta(hours=2))}, "more than 5m ahead"),
        ({"notBefore": _rfc3339(-timedelta(days=365))}, "more than 5m in the past"),
        ({"notBefore": "0001-01-01T00:00:00+01:00"}, "notBefore"),
        ({"notAfter": "9999-12-31T23:59:59-01:00"}, "notAfter"),
    ],
)
async def test_acme_new_order_refuses_a_not_before_outside_the_skew(
    acme_server: RunningServer, bounds: dict[str, str], said: str
) -> None:
    async with acme_client(acme_server) as acme:
        await acme.new_account()
        r = await acme.new_order(("dns", "w.example.com"), **bounds)
    assert said in assert_problem(r, 400, "malformed")["detail"]


async def test_acme_new_order_accepts_a_small_skew(acme_server: RunningServer) -> None:
    async with acme_client(acme_server) as acme:
        await acme.new_account()
        r = await acme.new_order(("dns", "w.example.com"), notBefore=_rfc3339(timedelta(minutes=2)))
    assert r.status_code == 201, r.text


async def test_acme_order_not_before_is_honoured_at_finalize(acme_server: RunningServer) -> None:
    """Finalize checks the skew from the order's creation, so the notBefore the order
    was accepted with is the one the certificate gets, however late it is finalized."""
    from engine.jose import b64url_encode
    from engine.ports import FrozenClock

    from .test_acme_flows import accept_all, authorize, csr_der, ordered

    accept_all(acme_server)
    not_before = (datetime.now(UTC) + timedelta(minutes=2)).replace(microsecond=0)
    async with acme_client(acme_server) as acme:
        await acme.new_account()
        url, order = await ordered(
            acme, ("dns", "later.example.com"), notBefore=not_before.isoformat()
        )
        await authorize(acme, order)
        # Twenty minutes later (beyond the 5m skew from then), the order is finalized.
        acme_server.authority.clock = FrozenClock(datetime.now(UTC) + timedelta(minutes=20))
        _, der = csr_der(["later.example.com"])
        await acme.post(order["finalize"], {"csr": b64url_encode(der)})
        done = await acme.wait_for(url, ["valid"])
        chain = (await acme.get(done["certificate"])).content
    leaf = x509.load_pem_x509_certificates(chain)[0]
    assert leaf.not_valid_before_utc == not_before


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 10**20},
        {"exp": 2**63, "nbf": 2**62},
        {"nbf": -(10**20)},
        {"iat": 10**20},
        {"exp": 1e308, "nbf": -1e308},
        {"exp": 253402300799, "nbf": 253402300000},  # the last second of year 9999
    ],
)
async def test_token_times_beyond_the_calendar_are_unauthorized(
    server: RunningServer, ca: CA, claims: dict[str, Any]
) -> None:
    from engine.jose import jwk_from_public_key, jwk_thumbprint, sign_compact
    from plugins.jwk.tokens import sign_token_claims
    from tests.conftest import provisioner_of

    key = provisioner_of(server.authority).load_private_key(ca.password)
    _, _, csr_pem = new_csr("times.example.com")
    base = sign_token_claims(
        provisioner="admin",
        subject="times.example.com",
        audience=f"{server.url}/1.0/sign",
        now=datetime.now(UTC),
        jti="times-" + str(sorted(claims.items())),
        sans=["times.example.com"],
    )
    kid = jwk_thumbprint(jwk_from_public_key(key.public_key()))
    token = sign_compact({**base, **claims}, key, headers={"kid": kid})
    async with client(server) as http:
        r = await http.post("/1.0/sign", json={"csr": csr_pem, "ott": token})
    assert_json_error(r, 401)
