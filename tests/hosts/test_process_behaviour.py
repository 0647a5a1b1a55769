"""How ``devid`` behaves as a process: one-line errors, broken pipes, the data directory's
lock, and signals (SIGHUP reloads, SIGTERM drains), on real processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hosts.testing.ports import free_port, occupied
from hosts.testing.servers import HOSTS, clean_env, devid_command, run_devid, start_devid_serve
from tests.conftest import CA


def _env(ca: CA) -> dict[str, str]:
    return clean_env(DEVID_PASSWORD=ca.password.decode())


@pytest.mark.parametrize("host", HOSTS)
def test_a_busy_port_is_one_line_before_anything_is_issued(
    ca: CA, tmp_path: Path, host: str
) -> None:
    port = free_port()
    listen = f"127.0.0.1:{port}"
    with occupied(port):
        result = run_devid(
            "serve", "--data", ca.data_dir, "--host", host, "--listen", listen,
            env=_env(ca), check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"devid serve: cannot listen on {listen}: address already in use — stop the other"
        " server or choose another with --listen HOST:PORT"
    ]
    assert "Traceback" not in result.stdout
    # Refused before the server issued its TLS certificate.
    assert not (ca.data_dir / "tls").exists()


def test_debug_shows_the_traceback(ca: CA, tmp_path: Path) -> None:
    result = run_devid(
        "--debug", "device", "list", "--data", tmp_path / "missing", env=_env(ca), check=False
    )
    assert result.returncode != 0 and "Traceback" in result.stderr
    quiet = run_devid("device", "list", "--data", tmp_path / "missing", env=_env(ca), check=False)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert len(quiet.stderr.strip().splitlines()) == 1


def test_a_second_serve_on_the_same_data_directory_is_refused(ca: CA, tmp_path: Path) -> None:
    server = start_devid_serve(ca.data_dir, tmp_path / "first.log", host="raw", env=_env(ca))
    try:
        second = run_devid(
            "serve", "--data", ca.data_dir, "--listen", f"127.0.0.1:{free_port()}",
            env=_env(ca), check=False,
        )  # fmt: skip
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"pid {server.pid}" in lines[0] and "already being served" in lines[0]
        # Commands that write to the store keep working while the server runs.
        run_devid("device", "list", "--data", ca.data_dir, env=_env(ca))
    finally:
        server.stop()


def test_a_reader_that_leaves_ends_the_command_quietly(ca: CA) -> None:
    read, write = os.pipe()
    os.close(read)  # like `devid account list | head -0`: nobody reads what devid prints
    try:
        result = subprocess.run(
            [*devid_command(), "account", "list", "--data", str(ca.data_dir)],
            stdout=write,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=_env(ca),
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert result.returncode in (0, 141)
    assert result.stderr == b""
