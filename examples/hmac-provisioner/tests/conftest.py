"""Fixtures of the HMAC provisioner's tests: a kit CA with the plugin and an HMAC
provisioner ``lab``, its shared secret, and a minter for the conformance suite.

Everything devid-side comes from devid's test kit: the ``devid_ca`` and
``devid_server_factory`` fixtures (hosts.testing.plugin, loaded by pytest
because devid is installed) and the helpers of :mod:`hosts.testing`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import devid_hmac
import pytest

from hosts.testing import CredentialRequest, LocalCA
from plugins.api import Provisioner


@pytest.fixture
def ca(devid_ca: LocalCA) -> LocalCA:
    """The kit's CA with this plugin loaded (once, whether or not it is installed)."""
    devid_ca.register_plugin(devid_hmac, "hmac")
    return devid_ca


@pytest.fixture
def secret() -> bytes:
    return secrets.token_urlsafe(32).encode()


@pytest.fixture
def write_secret(ca: LocalCA) -> Callable[..., str]:
    """Write a secret file under the CA's data directory; its name relative to it."""

    def write(value: bytes, name: str = "hmac-lab.key", mode: int = 0o600) -> str:
        relative = Path("secrets") / name
        path = ca.data_dir / relative
        path.write_bytes(value + b"\n")
        path.chmod(mode)
        return str(relative)

    return write


@pytest.fixture
def table(write_secret: Callable[..., str], secret: bytes) -> dict[str, Any]:
    """The ``[[provisioners]]`` table of the provisioner ``lab``."""
    return {
        "type": "HMAC",
        "name": "lab",
        "secret_file": write_secret(secret),
        "allowed_names": ["*.lab.example.com", "lab.example.com"],
    }


@pytest.fixture
def lab(ca: LocalCA, table: dict[str, Any]) -> Provisioner:
    """The provisioner ``lab``, configured in the CA."""
    return ca.add_provisioner(table)


@pytest.fixture
def mint(secret: bytes) -> Callable[[CredentialRequest], str]:
    """What a client holding the secret sends, for each request of the conformance suite
    (tokens bound to the CSR when the request asks for ``csr_sha256``)."""

    def mint(request: CredentialRequest) -> str:
        return devid_hmac.mint_token(
            secret,
            provisioner=request.provisioner,
            subject=request.subject,
            sans=request.sans,
            audience=request.audience,
            now=request.now,
            jti=request.jti,
            lifetime=request.lifetime,
            csr_der=request.csr_der,
        )

    return mint
