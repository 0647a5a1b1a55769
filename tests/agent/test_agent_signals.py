"""`devid agent run` as a process: SIGUSR1 and `devid agent poke` run a pass at once, the
files of an account no longer assigned leave --out, SIGTERM stops it (pid file removed),
and the HTTP client's per-request lines stay out of its log."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from agent.daemon import Agent, configure_logging, run
from hosts.testing.servers import run_devid
from tests.agent.test_agent_run import device, make_agent
from tests.conftest import RunningServer

if TYPE_CHECKING:
    from tests.swtpm import Swtpm

pytest_plugins = ["tests.swtpm"]

__all__ = ["device"]  # the fixture, used by name


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not check():
            await trio.sleep(0.1)
        return
    pytest.fail(f"timed out waiting for {what}")


def _listings(events: list[str]) -> int:
    return sum(1 for e in events if e.startswith("accounts:"))


async def test_poke_and_sigusr1_run_a_pass_and_unassigned_files_are_removed(
    quart_server: RunningServer, device: Swtpm, tmp_path: Path, nursery: trio.Nursery
) -> None:
    events: list[str] = []
    agent: Agent = make_agent(quart_server, device, tmp_path)
    agent.on_event = events.append
    out, state = tmp_path / "agent-out", tmp_path / "agent-state"
    stopped = trio.Event()

    async def agent_run() -> None:
        assert await run(agent) == 0
        stopped.set()

    nursery.start_soon(agent_run)
    await _until(lambda: agent.complete() and (out / "vpn.crt").exists(), 120, "both accounts")
    assert (state / "agent.pid").read_text().strip() == str(os.getpid())
    assert (out / "vpn.key").exists() and (out / "vpn.p12").exists()

    # The vpn account is taken away; `devid agent poke` makes the agent notice at once.
    quart_server.authority.accounts.remove("vpn")
    poked = await trio.to_thread.run_sync(partial(run_devid, "agent", "poke", "--state", state))
    assert "poked the agent" in poked.stdout
    await _until(lambda: not (out / "vpn.crt").exists(), 60, "the vpn files to go")
    assert not (out / "vpn.key").exists() and not (out / "vpn.p12").exists()
    assert (out / "wifi.crt").exists()
    assert any(e.startswith("account vpn is no longer assigned") for e in events)

    # SIGUSR1 itself: another listing right away (the next one was an hour away).
    before = _listings(events)
    os.kill(os.getpid(), signal.SIGUSR1)
    await _until(lambda: _listings(events) > before, 60, "a pass after SIGUSR1")

    # SIGHUP: a reload and a pass, still running.
    before = _listings(events)
    os.kill(os.getpid(), signal.SIGHUP)
    await _until(lambda: _listings(events) > before, 60, "a pass after SIGHUP")

    os.kill(os.getpid(), signal.SIGTERM)  # the agent's own handler stops it
    with trio.fail_after(30):
        await stopped.wait()
    assert not (state / "agent.pid").exists()


def test_poke_without_a_running_agent_says_so(tmp_path: Path) -> None:
    result = run_devid("agent", "poke", "--state", tmp_path, check=False)
    assert result.returncode == 1
    assert "no agent is running" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "agent.pid").write_text("999999999\n")
    result = run_devid("agent", "poke", "--state", tmp_path, check=False)
    assert result.returncode == 1 and "not running any more" in result.stderr


async def test_the_http_client_logs_no_line_per_request(
    quart_server: RunningServer, device: Swtpm, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging()
    try:
        caplog.set_level(logging.INFO)
        assert await run(make_agent(quart_server, device, tmp_path), once=True) == 0
        names = {record.name for record in caplog.records}
        assert "devid.agent" in names
        assert not {n for n in names if n.startswith(("httpx", "httpcore"))}
    finally:
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)
