"""Finalize stores the valid order and its certificate in one transaction; racing
finalizations (in this process, or another worker's) leave exactly one certificate."""

from __future__ import annotations

from typing import Any

from engine.acme.effects import StartValidation
from engine.jose import b64url_encode
from hosts.store import AuditQuery
from hosts.validation import ValidationConfig
from tests.conftest import RunningServer

from .acme_helpers import (
    acme_client,
    acme_server_fixture,  # noqa: F401
    assert_problem,
)
from .test_acme_flows import authorize, csr_der, ordered


async def _valid(job: StartValidation, config: ValidationConfig) -> None:
    return None


def _count(server: RunningServer, table: str) -> int:
    db = server.authority.stores.acme.database.connection  # the test looks, it does not touch
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def _ready_order(acme: Any, name: str) -> tuple[str, dict[str, Any], str]:
    await acme.new_account()
    url, order = await ordered(acme, ("dns", name))
    await authorize(acme, order)
    await acme.wait_for(url, ["ready"])
    _, der = csr_der([name])
    return url, order, b64url_encode(der)


async def test_an_order_held_by_another_request_is_not_ready(acme_server: RunningServer) -> None:
    acme_server.authority.acme.validator = _valid
    async with acme_client(acme_server) as acme:
        url, order, csr = await _ready_order(acme, "held.example.com")
        order_id = url.rsplit("/", 1)[1]
        before = _count(acme_server, "certificates")
        with acme_server.authority.acme.finalizing(order_id):
            refused = await acme.post(order["finalize"], {"csr": csr})
        assert_problem(refused, 403, "orderNotReady")
        assert _count(acme_server, "certificates") == before
        assert (await acme.get(url)).json()["status"] == "ready"
        done = await acme.post(order["finalize"], {"csr": csr})
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "valid" and done.json()["certificate"]
    assert _count(acme_server, "certificates") == before + 1


async def test_an_order_finalized_elsewhere_meanwhile_stores_nothing(
    acme_server: RunningServer,
) -> None:
    """Another worker stored the order while this one signed: this certificate is dropped."""
    acme_server.authority.acme.validator = _valid
    store = acme_server.authority.stores.acme
    real_write = store.acme_write

    def racing_write(write: Any, **certificate: Any) -> bool:
        if certificate:  # the final write: another process got there first
            store.database.connection.execute("UPDATE acme_orders SET revision = revision + 1")
        return real_write(write, **certificate)

    async with acme_client(acme_server) as acme:
        url, order, csr = await _ready_order(acme, "race.example.com")
        before = _count(acme_server, "certificates")
        store.acme_write = racing_write  # type: ignore[method-assign]
        try:
            refused = await acme.post(order["finalize"], {"csr": csr})
        finally:
            del store.acme_write
        assert_problem(refused, 403, "orderNotReady")
        assert _count(acme_server, "certificates") == before
        assert _count(acme_server, "acme_certificates") == 0
        assert (await acme.get(url)).json()["status"] == "ready"


async def test_finalize_makes_one_write(acme_server: RunningServer) -> None:
    acme_server.authority.acme.validator = _valid
    store = acme_server.authority.stores.acme
    real_write = store.acme_write
    writes: list[Any] = []

    def counting_write(write: Any, **certificate: Any) -> bool:
        writes.append((write, certificate))
        return real_write(write, **certificate)

    async with acme_client(acme_server) as acme:
        _, order, csr = await _ready_order(acme, "once.example.com")
        store.acme_write = counting_write  # type: ignore[method-assign]
        try:
            done = await acme.post(order["finalize"], {"csr": csr})
        finally:
            del store.acme_write
        assert done.status_code == 200, done.text
    assert len(writes) == 1
    ((write, certificate),) = writes
    assert [o.status.value for o in write.orders] == ["valid"]
    assert certificate["certificate"] is not None and certificate["link"] is not None


async def test_a_finalized_order_is_audited_under_its_acme_account(
    acme_server: RunningServer,
) -> None:
    acme_server.authority.acme.validator = _valid
    async with acme_client(acme_server) as acme:
        _, order, csr = await _ready_order(acme, "audited.example.com")
        done = await acme.post(order["finalize"], {"csr": csr})
        assert done.status_code == 200, done.text
    order_id = order["finalize"].rstrip("/").split("/")[-2]
    found, _ = acme_server.authority.auditor.find(AuditQuery(action="certificate.issued"))
    issued = [e for e in found if e.details.get("order") == order_id]
    assert len(issued) == 1
    assert issued[0].actor.startswith("acme:acme/")
