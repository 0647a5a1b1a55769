"""Helpers for the ACME host tests: a small signed-request client, config edits, fixtures."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import tomli_w
import trio
from cryptography.hazmat.primitives.asymmetric import ec

from engine.acme.jws import sign_flattened, sign_request
from engine.jose import PrivateKey, jwk_from_public_key
from tests.conftest import CA, HOSTS, RunningServer, ServerStop, start_server

from .helpers import client

JOSE = {"content-type": "application/jose+json"}
PROBLEM = "application/problem+json"
ACME_ERROR = "urn:ietf:params:acme:error:"
LOOPBACK_RANGES = ["127.0.0.0/8", "::1/128"]


def edit_provisioner(data_dir: Path, name: str, **options: Any) -> None:
    """Change options of the provisioner *name* in DIR/devid.toml (None removes one)."""
    path = data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    for table in config["provisioners"]:
        if table["name"] == name:
            for key, value in options.items():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
            break
    else:
        raise KeyError(name)
    path.write_text(tomli_w.dumps(config))


def add_provisioner(data_dir: Path, table: Mapping[str, Any]) -> None:
    path = data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    config["provisioners"].append(dict(table))
    path.write_text(tomli_w.dumps(config))


def fast_retries(server: RunningServer, *, retry_for: float = 1.0) -> None:
    """Validation retries in tenths of a second instead of seconds."""
    acme = server.authority.acme
    acme.config = attrs.evolve(
        acme.config, retry_for=retry_for, first_retry=0.05, max_retry_delay=0.2
    )


async def acme_server_for(
    ca: CA, nursery: trio.Nursery, host: str
) -> tuple[RunningServer, ServerStop]:
    edit_provisioner(ca.data_dir, "acme", allowed_ip_ranges=LOOPBACK_RANGES)
    running, stop = await start_server(ca, nursery, host)
    fast_retries(running)
    return running, stop


@pytest.fixture(params=HOSTS, name="acme_server")
async def acme_server_fixture(
    ca: CA, nursery: trio.Nursery, request: pytest.FixtureRequest
) -> AsyncIterator[RunningServer]:
    """Each host in turn, its `acme` provisioner also allowing loopback addresses."""
    running, stop = await acme_server_for(ca, nursery, request.param)
    yield running
    await stop.close()


@pytest.fixture(name="acme_quart")
async def acme_quart_fixture(ca: CA, nursery: trio.Nursery) -> AsyncIterator[RunningServer]:
    """The quart host only, for flows whose host independence another test covers."""
    running, stop = await acme_server_for(ca, nursery, "quart")
    yield running
    await stop.close()


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class ACMEClient:
    """Just enough of an ACME client to build good and deliberately bad requests."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base: str,
        provisioner: str = "acme",
        key: PrivateKey | None = None,
    ) -> None:
        self.http = http
        self.base = base
        self.provisioner = provisioner
        self.key: PrivateKey = key if key is not None else new_key()
        self.kid: str | None = None
        self.directory: dict[str, Any] = {}

    @property
    def directory_url(self) -> str:
        return f"{self.base}/acme/{self.provisioner}/directory"

    async def start(self) -> ACMEClient:
        r = await self.http.get(self.directory_url)
        assert r.status_code == 200, r.text
        self.directory = r.json()
        return self

    async def nonce(self) -> str:
        r = await self.http.head(self.directory["newNonce"])
        assert r.status_code == 200, r.text
        return str(r.headers["replay-nonce"])

    async def signed(
        self,
        url: str,
        payload: Any = None,
        *,
        key: PrivateKey | None = None,
        use_jwk: bool = False,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """A request body: kid when the client has an account (unless *use_jwk*)."""
        nonce = nonce if nonce is not None else await self.nonce()
        signer = key if key is not None else self.key
        kid = None if (use_jwk or key is not None or self.kid is None) else self.kid
        return sign_request(signer, url, payload, nonce=nonce, kid=kid)

    async def custom(
        self,
        url: str,
        payload: Any,
        header: Mapping[str, Any],
        *,
        alg: str | None = None,
        key: PrivateKey | None = None,
    ) -> dict[str, str]:
        """A body with exactly *header* (plus alg) as its protected header."""
        return sign_flattened(key or self.key, payload, header, alg=alg)

    async def send(self, url: str, body: Any, headers: Mapping[str, str] = JOSE) -> httpx.Response:
        content = body if isinstance(body, bytes) else httpx.Request("POST", url, json=body).content
        return await self.http.post(url, content=content, headers=dict(headers))

    async def post(self, url: str, payload: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.send(url, await self.signed(url, payload, **kwargs))

    async def new_account(self, **payload: Any) -> httpx.Response:
        payload.setdefault("termsOfServiceAgreed", True)
        r = await self.post(self.directory["newAccount"], payload, use_jwk=True)
        if r.status_code in (200, 201):
            self.kid = r.headers["location"]
        return r

    async def new_order(self, *identifiers: tuple[str, str], **extra: Any) -> httpx.Response:
        payload = {"identifiers": [{"type": t, "value": v} for t, v in identifiers], **extra}
        return await self.post(self.directory["newOrder"], payload)

    async def get(self, url: str) -> httpx.Response:
        """POST-as-GET."""
        return await self.post(url, None)

    async def wait_for(
        self, url: str, statuses: Sequence[str], *, timeout: float = 15.0
    ) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                r = await self.get(url)
                assert r.status_code == 200, r.text
                body: dict[str, Any] = r.json()
                if body["status"] in statuses:
                    return body
                await trio.sleep(0.05)


@asynccontextmanager
async def acme_client(
    server: RunningServer, provisioner: str = "acme", key: PrivateKey | None = None
) -> AsyncIterator[ACMEClient]:
    async with client(server) as http:
        yield await ACMEClient(http, server.url, provisioner, key).start()


def assert_problem(
    response: httpx.Response, status: int, kind: str, *, nonce: bool = True
) -> dict[str, Any]:
    """An ACME refusal: the status, problem+json of the given type, and a fresh nonce."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["type"] == ACME_ERROR + kind, body
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    if nonce:
        assert len(response.headers.get("replay-nonce", "")) >= 16, response.headers
    return body


def jwk_of(key: PrivateKey) -> dict[str, str]:
    return jwk_from_public_key(key.public_key())
