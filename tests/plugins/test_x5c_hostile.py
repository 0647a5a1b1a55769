"""X5C tokens carrying certificates cryptography loads but cannot fully read.

A certificate of X.509 "version 4", one whose issuer Name is not a Name, one whose key
algorithm nobody implements: as the leaf or as an intermediate of the x5c header, at
``/1.0/sign`` (through the provisioner and through ``sign_body`` (hosts/http/api.py)) and at the
device's account listing (``_certificate_from_token``). Each is refused with a
ProtocolError and stores nothing; none may escape as cryptography's own exception.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.errors import BadRequest, ProtocolError, Unauthorized
from engine.ports import CountingRandom, FrozenClock
from hosts.core.authority import Authority
from hosts.service.accounts import DEVICE_API, DEVICE_API_PROVISIONER, _certificate_from_token
from tests.conftest import CA
from tests.hostile import (
    certificate_v4,
    certificate_with_duplicate_extension,
    certificate_with_malformed_issuer,
    certificate_with_unknown_key_algorithm,
)
from tests.plugins.test_x5c_security import (
    BASE,
    CSR_PEM,
    Holder,
    Submit,
    _via_authority,
    _via_provisioner,
    add_x5c_provisioner,
    agent_ca,
    agent_signer,
    claims_for,
    make_certificate,
    refuse,
    signed_with_header,
)


@pytest.fixture
def x5c_ca(ca: CA, clock: FrozenClock) -> Iterator[Authority]:
    """The CA with an X5C provisioner trusting its Agent CA (as in test_x5c_security)."""
    add_x5c_provisioner(ca)
    auth = Authority.load(ca.data_dir, ca.password, clock=clock, random=CountingRandom())
    auth.set_base_urls([BASE])
    yield auth
    auth.close()


@pytest.fixture(params=["provisioner", "authority"])
def send(request: pytest.FixtureRequest) -> Submit:
    return _via_provisioner if request.param == "provisioner" else _via_authority


Spoil = Callable[[x509.Certificate, Any], bytes]

SPOILED: dict[str, tuple[Spoil, type[ProtocolError]]] = {
    "version 4": (certificate_v4, BadRequest),
    "malformed issuer": (certificate_with_malformed_issuer, BadRequest),
    "unknown key algorithm": (certificate_with_unknown_key_algorithm, Unauthorized),
    "duplicate extension": (certificate_with_duplicate_extension, Unauthorized),
}


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


def _x5c_with_spoiled_leaf(authority: Authority, kind: str) -> tuple[Holder, list[str]]:
    """A leaf the Agent CA signed, spoiled and signed again by the Agent CA."""
    signer = agent_signer(authority)
    leaf = make_certificate(signer, cn="odd-device.example.com", now=authority.clock.now())
    spoiled = SPOILED[kind][0](leaf.certificate, signer.key)
    return leaf, [_b64(spoiled), _b64(agent_ca(authority).public_bytes(Encoding.DER))]


def _x5c_with_spoiled_intermediate(authority: Authority, kind: str) -> tuple[Holder, list[str]]:
    """A good leaf under an intermediate CA (signed by the Agent CA) that is spoiled."""
    signer = agent_signer(authority)
    now = authority.clock.now()
    intermediate = make_certificate(signer, cn="Intermediate CA", now=now, ca=True)
    leaf = make_certificate(intermediate, cn="odd-device.example.com", now=now)
    spoiled = SPOILED[kind][0](intermediate.certificate, signer.key)
    return leaf, [_b64(leaf.certificate.public_bytes(Encoding.DER)), _b64(spoiled)]


@pytest.mark.parametrize("kind", list(SPOILED))
def test_a_spoiled_leaf_is_refused(send: Submit, x5c_ca: Authority, kind: str) -> None:
    holder, x5c = _x5c_with_spoiled_leaf(x5c_ca, kind)
    token = signed_with_header(holder, x5c, claims_for(x5c_ca))
    refuse(send, x5c_ca, token, CSR_PEM, SPOILED[kind][1], "x5c")


@pytest.mark.parametrize("kind", list(SPOILED))
def test_a_spoiled_intermediate_is_refused(send: Submit, x5c_ca: Authority, kind: str) -> None:
    holder, x5c = _x5c_with_spoiled_intermediate(x5c_ca, kind)
    token = signed_with_header(holder, x5c, claims_for(x5c_ca))
    # An intermediate whose key or extensions cannot be read is no issuer: no path.
    error, match = {
        "unknown key algorithm": (Unauthorized, "chain"),
        "duplicate extension": (Unauthorized, "chain"),
    }.get(kind, (BadRequest, "x5c"))
    refuse(send, x5c_ca, token, CSR_PEM, error, match)


@pytest.mark.parametrize("where", ["leaf", "intermediate"])
@pytest.mark.parametrize("kind", list(SPOILED))
def test_the_device_account_listing_refuses_spoiled_tokens(
    x5c_ca: Authority, kind: str, where: str
) -> None:
    make = _x5c_with_spoiled_leaf if where == "leaf" else _x5c_with_spoiled_intermediate
    holder, x5c = make(x5c_ca, kind)
    token = signed_with_header(
        holder, x5c, claims_for(x5c_ca, iss=DEVICE_API_PROVISIONER, aud=f"{BASE}{DEVICE_API}")
    )
    with pytest.raises(ProtocolError) as refused:
        _certificate_from_token(x5c_ca, token)
    assert isinstance(refused.value, BadRequest | Unauthorized), refused.value
