"""Real ACME clients (lego, certbot) against a real ``devid serve``, all on loopback.

One ``devid serve`` subprocess and one pebble-challtestsrv serve the whole interop
session. The mock DNS answers 127.0.0.1 for every ``A`` query, so a name such as
``x.devid.test`` leads the server's validators to the client's own responders; the
server is told where they listen with ``--acme-http01-port``,
``--acme-tlsalpn01-port`` and ``--acme-dns-resolver``. The data directory is
created with ``devid init`` and gets ``[acme] validation_retry_for = "3s"`` so a
challenge that cannot succeed ends ``invalid`` in seconds rather than 30.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hosts.testing.challtestsrv import ChallTestSrv, challtestsrv_available, start_challtestsrv
from hosts.testing.ports import free_ports
from hosts.testing.servers import devid_serve, run_devid

from .support import Server

# Validation retries stop after this long, so failing challenges end quickly.
RETRY_FOR = "3s"


@pytest.fixture(scope="session")
def interop_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestSrv]:
    if not challtestsrv_available():
        pytest.skip("pebble-challtestsrv is not installed (Debian package pebble)")
    with start_challtestsrv(tmp_path_factory.mktemp("interop-dns")) as server:
        yield server


@pytest.fixture(scope="session")
def interop_server(
    tmp_path_factory: pytest.TempPathFactory, interop_dns: ChallTestSrv
) -> Iterator[Server]:
    """``devid serve`` on a fresh data directory, validating through the mock DNS."""
    workdir = tmp_path_factory.mktemp("interop-ca")
    data = workdir / "data"
    run_devid("init", "--data", data)
    with (data / "devid.toml").open("a") as config:
        config.write(f'\n[acme]\nvalidation_retry_for = "{RETRY_FOR}"\n')
    http01, tlsalpn01 = free_ports(2)
    flags: tuple[str, ...] = ("--acme-http01-port", str(http01))
    flags += ("--acme-tlsalpn01-port", str(tlsalpn01))
    flags += ("--acme-dns-resolver", interop_dns.dns_address)
    log = workdir / "serve.log"
    with devid_serve(data, log, extra=flags) as served:
        yield Server(data, served.url, served.root_path, log, http01, tlsalpn01, interop_dns)


@pytest.fixture
def server(interop_server: Server, interop_dns: ChallTestSrv) -> Iterator[Server]:
    """The session's server; records a test set in the mock DNS are removed after it."""
    try:
        yield interop_server
    finally:
        interop_dns.reset()
