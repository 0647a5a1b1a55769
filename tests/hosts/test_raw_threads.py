"""The raw host bounds the threads that run request work and keeps its loaded heap
out of the garbage collector while it serves; both are undone when it stops."""

from __future__ import annotations

import gc

import pytest
import trio

from hosts.core.authority import Authority
from hosts.raw.server import REQUEST_THREADS, serve
from tests.conftest import CA


async def test_threads_bounded_and_heap_frozen_while_serving(ca: CA) -> None:
    authority = Authority.load(ca.data_dir, ca.password)
    limiter = trio.to_thread.current_default_thread_limiter()
    before = limiter.total_tokens
    stop = trio.Event()
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


async def test_threads_must_be_positive(ca: CA) -> None:
    authority = Authority.load(ca.data_dir, ca.password)
    try:
        with pytest.raises(ValueError):
            await serve(authority, "127.0.0.1:0", threads=0)
    finally:
        authority.close()
