"""hosts.testing.servers: devid serve on each host answers /health; failures say why."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import trio

from hosts.core.authority import Authority
from hosts.testing.processes import ProcessError
from hosts.testing.servers import (
    HOSTS,
    DevidServer,
    clean_env,
    devid_serve,
    run_devid,
    serving_in_process,
    start_devid_serve,
    tls_context,
)
from tests.conftest import CA


def password_file(ca: CA, tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_bytes(ca.password + b"\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("host", HOSTS)
def test_devid_serve_starts_on_each_host_and_answers_health(
    ca: CA, tmp_path: Path, host: str
) -> None:
    logs = tmp_path / "serve.log"
    with devid_serve(ca.data_dir, logs, host=host, password_file=password_file(ca, tmp_path)) as s:
        assert s.url == f"https://127.0.0.1:{s.port}" and s.port > 0
        assert f"https://localhost:{s.port}" in s.urls
        assert s.root_path == ca.root_path  # the data directory's own root
        assert s.command[s.command.index("--host") + 1] == host
        with httpx.Client(verify=tls_context(s.root_path)) as http:
            assert http.get(f"{s.url}/health").status_code == 200
        pid = s.pid
    assert s.process.returncode == 0  # SIGTERM: a graceful stop
    assert not Path(f"/proc/{pid}").exists() or s.process.running() is False


def test_a_server_that_cannot_start_fails_with_its_output(ca: CA, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ProcessError) as raised:
        start_devid_serve(
            ca.data_dir,
            tmp_path / "serve.log",
            env=clean_env(DEVID_PASSWORD="not the password"),
            timeout=30,
        )
    assert time.monotonic() - started < 30
    assert "devid serve exited with status" in str(raised.value)
    assert "password is wrong" in str(raised.value)


def test_servers_launched_together_are_ready_one_by_one(ca: CA, tmp_path: Path) -> None:
    first = DevidServer.launch(ca.data_dir, tmp_path / "a.log", host="raw", workers=2,
                               password_file=password_file(ca, tmp_path))  # fmt: skip
    try:
        with pytest.raises(RuntimeError, match="not ready"):
            _ = first.url
        first.wait_ready()
        assert len(first.process.tree_pids()) == 3  # the supervisor and two workers
    finally:
        first.stop()


def test_run_devid_raises_with_the_output_when_asked_to_check() -> None:
    assert run_devid("--help").returncode == 0
    failed = run_devid("no-such-command", check=False)
    assert failed.returncode == 2
    with pytest.raises(ProcessError, match=r"(?s)exited with status 2.*invalid choice"):
        run_devid("no-such-command")


@pytest.mark.parametrize("host", HOSTS)
async def test_a_host_in_process_answers_health(ca: CA, host: str) -> None:
    authority = Authority.load(ca.data_dir, ca.password)
    try:
        async with serving_in_process(authority, host) as served:
            assert served.url.startswith("https://127.0.0.1:")
            async with httpx.AsyncClient(verify=tls_context(ca.root_path)) as http:
                assert (await http.get(f"{served.url}/health")).status_code == 200
        with trio.fail_after(1):
            await served.stop()  # already stopped: returns at once
    finally:
        authority.close()
