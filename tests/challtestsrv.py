"""Fixtures for pebble-challtestsrv as a mock DNS server (see hosts.testing.challtestsrv).

Use them from any test module with::

    if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
        from tests.challtestsrv import ChallTestSrv

    pytest_plugins = ["tests.challtestsrv"]

    def test_something(challtestsrv: ChallTestSrv) -> None:
        challtestsrv.set_txt("_acme-challenge.x.devid.test", "value")
        config = ValidationConfig(dns_resolver=challtestsrv.dns_resolver)  # hosts.validation

Fixtures: ``challtestsrv_session`` (one server per test session) and
``challtestsrv`` (the same server; every record a test set through the helpers is
removed again when the test ends). ``start_challtestsrv()`` starts a private one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest

from hosts.testing.challtestsrv import (
    BINARY,
    ChallTestSrv,
    ChallTestSrvError,
    challtestsrv_available,
    fqdn,
    start_challtestsrv,
)

__all__ = [
    "ChallTestSrv",
    "ChallTestSrvError",
    "challtestsrv",
    "challtestsrv_available",
    "challtestsrv_session",
    "fqdn",
    "start_challtestsrv",
]


@pytest.fixture(scope="session")
def challtestsrv_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestSrv]:
    if not challtestsrv_available():
        pytest.skip(f"{BINARY} is not installed (Debian package pebble)")
    with start_challtestsrv(tmp_path_factory.mktemp("challtestsrv")) as server:
        yield server


@pytest.fixture
def challtestsrv(challtestsrv_session: ChallTestSrv) -> Iterator[ChallTestSrv]:
    """The session's mock DNS; records a test sets through the helpers are cleared after it."""
    try:
        yield challtestsrv_session
    finally:
        with contextlib.suppress(ChallTestSrvError, httpx.HTTPError):
            challtestsrv_session.reset()
