"""The devid pytest plugin: fixtures for testing devid plugins against a real CA.

Installed with devid (entry point ``devid`` in the ``pytest11`` group), so any
test run in an environment where devid is installed has these fixtures; no
``conftest.py`` is needed. Their names start with ``devid_`` so they do not
clash with a project's own.

``devid_ca``
    A throw-away CA (``devid init`` in a temporary directory) loaded in this
    process, as a :class:`hosts.testing.ca.LocalCA`: ``sign``, ``revoke``,
    ``renew``, ``certificates()``, ``register_plugin(plugin, name)`` (this CA
    only, so nothing outlives the test), ``add_provisioner(table)``,
    ``context(path)``, ``mint_token(...)`` for its ``admin`` JWK provisioner.
``devid_server_factory``
    ``devid_server_factory(host="quart", workers=1)`` serves ``devid_ca``'s
    directory with a real ``devid serve`` on 127.0.0.1 (host ``"quart"`` or
    ``"raw"``) and returns a :class:`hosts.testing.served.ServedCA` (URL, CA root,
    ``client()``, ``sign``, ``revoke``, ``audience(path)``); stopped after the test.
    The server loads installed plugins only.
``devid_server``
    ``devid_ca`` served on each host in turn: a test that uses it runs once on
    quart and once on raw.

Nothing of devid's host code is imported until a fixture is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .ca import LocalCA
    from .served import ServedCA

#: The hosts ``devid_server`` runs on (kept equal to hosts.testing.servers.HOSTS).
SERVER_HOSTS = ("quart", "raw")


@pytest.fixture
def devid_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCA]:
    """A new CA in a temporary directory, loaded in process with the installed plugins."""
    from .ca import LocalCA

    ca = LocalCA.create(tmp_path_factory.mktemp("devid-ca") / "ca")
    try:
        yield ca
    finally:
        ca.close()


@pytest.fixture
def devid_server_factory(
    devid_ca: LocalCA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ServedCA]]:
    """Start ``devid serve`` on ``devid_ca``'s directory: ``factory(host="quart",
    workers=1)``; every server it started is stopped after the test."""
    from .served import ServedCA

    started: list[ServedCA] = []

    def start(host: str = "quart", *, workers: int = 1) -> ServedCA:
        workdir = tmp_path_factory.mktemp(f"devid-serve-{host}")
        served = ServedCA.start(devid_ca, workdir, host=host, workers=workers)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in reversed(started):
            served.stop()


@pytest.fixture(params=SERVER_HOSTS)
def devid_server(
    devid_server_factory: Callable[..., ServedCA], request: pytest.FixtureRequest
) -> ServedCA:
    """``devid_ca`` served by ``devid serve`` on each host in turn (quart, then raw)."""
    host: str = request.param
    return devid_server_factory(host)
