"""tls-alpn-01 against TLS servers on loopback presenting hand-made validation
certificates."""

from __future__ import annotations

import hashlib
import ipaddress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from hosts.testing.ports import free_port
from hosts.validation.tlsalpn01 import validate_tlsalpn01

from .servers import (
    ACME_EXT,
    KEYAUTH,
    SECRET,
    acme_cert,
    config_for,
    needs_ipv6,
    problem_of,
    start_tls,
)

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.challtestsrv import ChallTestSrv

pytest_plugins = ["tests.challtestsrv"]


@pytest.fixture(scope="module")
def tls_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


async def test_tlsalpn01_name_success(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
) -> None:
    cert = acme_cert(tls_key, [x509.DNSName("x.devid.test")])
    server = await start_tls(nursery, tmp_path, tls_key, cert)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    await validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config)
    assert server.snis == ["x.devid.test"]


@pytest.mark.parametrize(
    ("address", "sni"),
    [
        ("127.0.0.1", "1.0.0.127.in-addr.arpa"),
        pytest.param("::1", "1." + "0." * 31 + "ip6.arpa", marks=needs_ipv6),
    ],
)
async def test_tlsalpn01_ip_success(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
    address: str,
    sni: str,
) -> None:
    cert = acme_cert(tls_key, [x509.IPAddress(ipaddress.ip_address(address))])
    server = await start_tls(nursery, tmp_path, tls_key, cert, host=address)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    await validate_tlsalpn01("ip", address, KEYAUTH, config)
    assert server.snis == [sni]  # RFC 8738: the reverse-DNS name


WRONG_DIGEST = b"\x04\x20" + hashlib.sha256(b"another key authorization").digest()


@pytest.mark.parametrize(
    ("sans", "extension", "critical", "found"),
    [
        (["x.devid.test"], None, True, "no acmeIdentifier extension"),
        (["x.devid.test"], ACME_EXT, False, "not critical"),
        (["x.devid.test"], WRONG_DIGEST, True, "acmeIdentifier that is not the SHA-256"),
        (["x.devid.test"], ACME_EXT[2:], True, "acmeIdentifier that is not"),  # no OCTET STRING
        (["x.devid.test", "y.devid.test"], ACME_EXT, True, "exactly one subjectAltName"),
        (["other.devid.test"], ACME_EXT, True, "does not name the dNSName x.devid.test"),
        (["127.0.0.1"], ACME_EXT, True, "does not name the dNSName x.devid.test"),
        ([], ACME_EXT, True, "no subjectAltName"),
    ],
)
async def test_tlsalpn01_bad_certificate(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
    sans: list[str],
    extension: bytes | None,
    critical: bool,
    found: str,
) -> None:
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    cert = acme_cert(tls_key, names, extension, critical)
    server = await start_tls(nursery, tmp_path, tls_key, cert)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "incorrectResponse"
    assert found in err.detail
    assert f"127.0.0.1:{server.port}" in err.detail


async def test_tlsalpn01_ip_needs_ip_san(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
) -> None:
    cert = acme_cert(tls_key, [x509.DNSName("1.0.0.127.in-addr.arpa")])
    server = await start_tls(nursery, tmp_path, tls_key, cert)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    err = await problem_of(validate_tlsalpn01("ip", "127.0.0.1", KEYAUTH, config))
    assert err.problem == "incorrectResponse"
    assert "does not name the iPAddress 127.0.0.1" in err.detail


@pytest.mark.parametrize(
    ("alpn", "found"), [([], "did not negotiate ALPN"), (["h2", "http/1.1"], "ALPN acme-tls/1")]
)
async def test_tlsalpn01_without_acme_alpn(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
    alpn: list[str],
    found: str,
) -> None:
    cert = acme_cert(tls_key, [x509.DNSName("x.devid.test")])
    server = await start_tls(nursery, tmp_path, tls_key, cert, alpn=alpn)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "tls"
    assert found in err.detail


async def test_tlsalpn01_not_tls(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
) -> None:
    server = await start_tls(nursery, tmp_path, tls_key, None)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "tls"
    assert "handshake" in err.detail


async def test_tlsalpn01_connection_refused(challtestsrv: ChallTestSrv) -> None:
    port = free_port()  # nothing listens on it
    config = config_for(challtestsrv, tlsalpn01_port=port)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "connection"
    assert "connection refused" in err.detail


async def test_tlsalpn01_timeout(nursery: trio.Nursery, challtestsrv: ChallTestSrv) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    config = config_for(challtestsrv, tlsalpn01_port=port, timeout=1.0)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "connection"
    assert "timed out" in err.detail
    assert "TLS handshake" in err.detail


# --- what a failed validation tells the ACME client ------------------------------------


async def test_tlsalpn01_problem_does_not_echo_the_certificate(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
) -> None:
    cert = acme_cert(tls_key, [x509.DNSName(f"{SECRET}.devid.test")], WRONG_DIGEST)
    server = await start_tls(nursery, tmp_path, tls_key, cert)
    config = config_for(challtestsrv, tlsalpn01_port=server.port)
    err = await problem_of(validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config))
    assert err.problem == "incorrectResponse"
    assert "does not name the dNSName x.devid.test" in err.detail
    assert SECRET not in err.detail


async def test_tlsalpn01_problem_does_not_echo_the_alpn_or_the_digest(
    nursery: trio.Nursery,
    tmp_path: Path,
    tls_key: ec.EllipticCurvePrivateKey,
    challtestsrv: ChallTestSrv,
) -> None:
    wrong = acme_cert(tls_key, [x509.DNSName("x.devid.test")], WRONG_DIGEST)
    digest_server = await start_tls(nursery, tmp_path, tls_key, wrong)
    err = await problem_of(
        validate_tlsalpn01(
            "dns",
            "x.devid.test",
            KEYAUTH,
            config_for(challtestsrv, tlsalpn01_port=digest_server.port),
        )
    )
    assert err.problem == "incorrectResponse"
    assert WRONG_DIGEST[2:].hex() not in err.detail

    alpn_server = await start_tls(nursery, tmp_path, tls_key, wrong, alpn=[SECRET])
    err = await problem_of(
        validate_tlsalpn01(
            "dns",
            "x.devid.test",
            KEYAUTH,
            config_for(challtestsrv, tlsalpn01_port=alpn_server.port),
        )
    )
    assert err.problem == "tls"
    assert "did not negotiate ALPN acme-tls/1" in err.detail
    assert SECRET not in err.detail
