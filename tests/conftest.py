"""Fixtures shared by the whole suite: a CA on disk, a loaded authority, a running server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from agent.caclient import make_csr
from engine.jose import PrivateKey
from engine.keys import KeyType
from engine.ports import CountingRandom, FrozenClock
from hosts.core.authority import Authority
from hosts.core.init import InitResult, init_data_dir
from hosts.core.secrets import Password
from hosts.http.api import renew_body, revoke_body, sign_body
from hosts.testing.servers import HOSTS as HOSTS
from hosts.testing.servers import InProcessServer, start_in_process
from hosts.testing.servers import serve_function as serve_function
from plugins.jwk import JWKProvisioner, mint_token
from plugins.keygen import generate_key

PASSWORD = b"correct horse battery staple"
REPO_ROOT = Path(__file__).resolve().parents[1]


@attrs.frozen
class CA:
    """A freshly initialised data directory and what a test needs to use it."""

    data_dir: Path
    init: InitResult
    password: bytes

    @property
    def root_path(self) -> Path:
        return self.init.root_path


@pytest.fixture(scope="session")
def _ca_template(tmp_path_factory: pytest.TempPathFactory) -> CA:
    directory = tmp_path_factory.mktemp("ca-template") / "ca"
    result = init_data_dir(directory, Password(PASSWORD, "test"))
    return CA(directory, result, PASSWORD)


@pytest.fixture
def ca(_ca_template: CA, tmp_path: Path) -> CA:
    """A private copy of an initialised CA (copying is much faster than init)."""
    import shutil

    target = tmp_path / "ca"
    shutil.copytree(_ca_template.data_dir, target)
    init = attrs.evolve(
        _ca_template.init,
        data_dir=target,
        root_path=target / _ca_template.init.root_path.relative_to(_ca_template.data_dir),
    )
    return CA(target, init, PASSWORD)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def authority(ca: CA) -> Iterator[Authority]:
    """The CA loaded in process, with the real clock, audiences for https://ca.test."""
    auth = Authority.load(ca.data_dir, ca.password)
    auth.set_base_urls(["https://ca.test"])
    yield auth
    auth.close()


@pytest.fixture
def frozen_authority(ca: CA, clock: FrozenClock) -> Iterator[Authority]:
    """The CA loaded with a frozen clock and deterministic randomness."""
    auth = Authority.load(ca.data_dir, ca.password, clock=clock, random=CountingRandom())
    auth.set_base_urls(["https://ca.test"])
    yield auth
    auth.close()


def provisioner_of(authority: Authority, name: str = "admin") -> JWKProvisioner:
    prov = authority.provisioners[name]
    assert isinstance(prov, JWKProvisioner)
    return prov


@pytest.fixture
def jwk_key(authority: Authority, ca: CA) -> PrivateKey:
    return provisioner_of(authority).load_private_key(ca.password)


TokenFactory = Callable[..., str]


def make_token_factory(key: PrivateKey, base_url: str, now: Callable[[], datetime]) -> TokenFactory:
    def factory(
        subject: str = "svc.example.com",
        sans: list[str] | None = None,
        *,
        audience: str | None = None,
        provisioner: str = "admin",
        lifetime: timedelta = timedelta(minutes=5),
        at: datetime | None = None,
        jti: str | None = None,
        csr_der: bytes | None = None,
        path: str = "/1.0/sign",
    ) -> str:
        return mint_token(
            key,
            provisioner=provisioner,
            subject=subject,
            audience=audience or f"{base_url}{path}",
            now=at or now(),
            jti=jti or uuid.uuid4().hex,
            sans=sans or [subject],
            lifetime=lifetime,
            csr_der=csr_der,
        )

    return factory


@pytest.fixture
def token(jwk_key: PrivateKey) -> TokenFactory:
    """Mint tokens for the in-process authority (audience https://ca.test/1.0/sign)."""
    return make_token_factory(jwk_key, "https://ca.test", lambda: datetime.now(UTC))


def new_csr(
    subject: str = "svc.example.com",
    sans: list[str] | None = None,
    key_type: KeyType = KeyType.P256,
) -> tuple[CertificateIssuerPrivateKeyTypes, x509.CertificateSigningRequest, str]:
    """A fresh key, a CSR for it, and the CSR as PEM text."""
    from cryptography.hazmat.primitives.serialization import Encoding

    key = generate_key(key_type)
    csr = make_csr(key, subject, sans if sans is not None else [subject])
    return key, csr, csr.public_bytes(Encoding.PEM).decode()


@attrs.frozen
class RunningServer:
    url: str
    urls: list[str]
    root_path: Path
    authority: Authority
    token: TokenFactory
    host: str = "quart"


class ServerStop:
    """Stops a server that :func:`start_server` started."""

    def __init__(self, served: InProcessServer, authority: Authority) -> None:
        self.served = served
        self.authority = authority

    def set(self) -> None:
        """Ask the server to shut down (as SIGTERM does) and return at once."""
        self.served.request_stop()

    async def close(self) -> None:
        """Shut the server down, wait until ``serve`` has returned (its background
        threads are done with the store), then close the authority."""
        await self.served.stop()
        self.authority.close()


async def start_server(
    ca: CA, nursery: trio.Nursery, host: str
) -> tuple[RunningServer, ServerStop]:
    auth = Authority.load(ca.data_dir, ca.password)
    try:
        served = await start_in_process(auth, nursery, host)
    except BaseException:
        auth.close()
        raise
    key = provisioner_of(auth).load_private_key(ca.password)
    running = RunningServer(
        url=served.url,
        urls=served.urls,
        root_path=ca.root_path,
        authority=auth,
        token=make_token_factory(key, served.url, lambda: datetime.now(UTC)),
        host=host,
    )
    return running, ServerStop(served, auth)


@pytest.fixture(params=HOSTS)
async def server(
    ca: CA, nursery: trio.Nursery, request: pytest.FixtureRequest
) -> AsyncIterator[RunningServer]:
    """Each host in turn (quart, then raw) on a free loopback port with real HTTPS:
    every test that uses it is part of the hosts' shared conformance suite."""
    running, stop = await start_server(ca, nursery, request.param)
    yield running
    await stop.close()


@pytest.fixture
async def quart_server(ca: CA, nursery: trio.Nursery) -> AsyncIterator[RunningServer]:
    """The quart host only (for what only it offers, such as HTTP/2)."""
    running, stop = await start_server(ca, nursery, "quart")
    yield running
    await stop.close()


def json_of(response: Any) -> dict[str, Any]:
    data = response.json()
    assert isinstance(data, dict)
    return data


def sign_json(authority: Authority, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /1.0/sign`` in process: the wire's parsing, the signing service, the answer."""
    return sign_body(authority, body)


def revoke_json(
    authority: Authority,
    body: dict[str, Any],
    peer_der: bytes | None = None,
    bearer: str | None = None,
) -> dict[str, Any]:
    """``POST /1.0/revoke`` in process: the wire's parsing, then the revocation service."""
    return revoke_body(authority, body, peer_der, bearer)


def renew_json(authority: Authority, peer_der: bytes | None) -> dict[str, Any]:
    """``POST /1.0/renew`` in process, with *peer_der* as the TLS client certificate."""
    return renew_body(authority, peer_der)
