"""The plugin in a real devid serve, on both hosts: tokens over HTTPS, the public view."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import devid_hmac
import pytest

from hosts.testing import LocalCA, ServedCA, new_csr
from plugins.api import Provisioner


@pytest.mark.parametrize("host", ["quart", "raw"])
def test_a_served_ca_issues_on_an_hmac_token_once(
    ca: LocalCA,
    lab: Provisioner,
    secret: bytes,
    devid_server_factory: Callable[..., ServedCA],
    host: str,
) -> None:
    server = devid_server_factory(host)
    name = "db.lab.example.com"
    credential = devid_hmac.mint_token(
        secret,
        provisioner="lab",
        subject=name,
        audience=server.audience("/1.0/sign"),
        now=ca.now(),
        jti=uuid.uuid4().hex,
    )
    first = server.sign(new_csr(name)[1], credential)
    assert first.status_code == 201, first.text
    assert first.json()["crt"].startswith("-----BEGIN CERTIFICATE-----")
    again = server.sign(new_csr(name)[1], credential)
    assert again.status_code == 401
    assert "already been used" in again.json()["message"]

    view = next(p for p in server.provisioners() if p["name"] == "lab")
    assert view["type"] == "HMAC"
    assert "secret" not in str(view).lower() and secret.decode() not in str(view)
