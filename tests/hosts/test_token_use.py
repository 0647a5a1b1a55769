"""A one-time token is used up only by a request that is signed."""

from __future__ import annotations

import pytest

from engine.errors import Forbidden
from hosts.core.authority import Authority
from tests.conftest import TokenFactory, new_csr, sign_json


def test_a_refused_lifetime_leaves_the_token_usable(
    authority: Authority, token: TokenFactory
) -> None:
    _, _, csr_pem = new_csr("svc.example.com")
    ott = token("svc.example.com")
    with pytest.raises(Forbidden):
        sign_json(authority, {"csr": csr_pem, "ott": ott, "notAfter": "9000h"})
    assert authority.stores.certificates.count_certificates() == 0
    response = sign_json(authority, {"csr": csr_pem, "ott": ott, "notAfter": "8h"})
    assert response["crt"].startswith("-----BEGIN CERTIFICATE-----")


def test_a_signed_request_uses_the_token_up(authority: Authority, token: TokenFactory) -> None:
    from engine.errors import Unauthorized

    _, _, csr_pem = new_csr("svc.example.com")
    ott = token("svc.example.com")
    sign_json(authority, {"csr": csr_pem, "ott": ott})
    with pytest.raises(Unauthorized, match="already been used"):
        sign_json(authority, {"csr": csr_pem, "ott": ott})
