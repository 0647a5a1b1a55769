"""Both hosts bound the threads that run request work and keep their loaded heap out of
the garbage collector while they serve; both are undone when they stop."""

from __future__ import annotations

import gc

import pytest
import trio

from hosts.core.authority import Authority
from hosts.core.runtime import REQUEST_THREADS, request_threads_and_frozen_heap
from tests.conftest import CA, HOSTS, serve_function


@pytest.mark.parametrize("host", HOSTS)
async def test_threads_bounded_and_heap_frozen_while_serving(ca: CA, host: str) -> None:
    authority = Authority.load(ca.data_dir, ca.password)
    limiter = trio.to_thread.current_default_thread_limiter()
    before = limiter.total_tokens
    stop = trio.Event()
    serve = serve_function(host)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve(
                    authority, "127.0.0.1:0", shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            assert limiter.total_tokens == REQUEST_THREADS
            assert gc.get_freeze_count() > 0
            stop.set()
    finally:
        authority.close()
    assert limiter.total_tokens == before
    assert gc.get_freeze_count() == 0


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"), request_threads_and_frozen_heap(0):
        pass


async def test_raw_host_refuses_zero_threads(ca: CA) -> None:
    from hosts.raw import serve

    authority = Authority.load(ca.data_dir, ca.password)
    try:
        with pytest.raises(ValueError, match="at least 1"):
            await serve(authority, "127.0.0.1:0", threads=0)
    finally:
        authority.close()
