"""A poll of an authorization or challenge waits briefly for the validation under way."""

from __future__ import annotations

import trio

from engine.acme.effects import StartValidation
from hosts.http import acme as acme_service
from hosts.validation import ValidationConfig
from tests.conftest import RunningServer

from .acme_helpers import (
    acme_client,
    acme_server_fixture,  # noqa: F401
)
from .test_acme_flows import challenge_answered


async def test_a_poll_shows_the_result_of_a_quick_validation(acme_server: RunningServer) -> None:
    release = trio.Event()

    async def slowish(job: StartValidation, config: ValidationConfig) -> None:
        await release.wait()

    acme_server.authority.acme.validator = slowish
    async with acme_client(acme_server) as acme:
        authz_url, challenge_url, started = await challenge_answered(acme, "poll.example.com")
        assert started.json()["status"] == "processing"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_release_soon, release)
            polled = await acme.get(authz_url)  # sent while the validation is under way
        assert polled.json()["status"] == "valid", polled.text
        again = await acme.get(challenge_url)
        assert again.json()["status"] == "valid"


async def _release_soon(release: trio.Event) -> None:
    await trio.sleep(0.05)
    release.set()


async def test_a_poll_does_not_wait_long(acme_server: RunningServer) -> None:
    hang = trio.Event()

    async def stuck(job: StartValidation, config: ValidationConfig) -> None:
        await hang.wait()

    acme_server.authority.acme.validator = stuck
    async with acme_client(acme_server) as acme:
        authz_url, challenge_url, _ = await challenge_answered(acme, "stuck.example.com")
        for url in (authz_url, challenge_url):
            start = trio.current_time()
            polled = await acme.get(url)
            waited = trio.current_time() - start
            assert polled.json()["status"] in ("pending", "processing"), polled.text
            assert acme_service.POLL_PATIENCE * 0.8 <= waited < acme_service.POLL_PATIENCE + 2
        hang.set()
        done = await acme.wait_for(authz_url, ["valid"])
    assert done["status"] == "valid"
