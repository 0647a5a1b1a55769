"""How ``devid`` behaves as a process: one-line errors, broken pipes, the data directory's
lock, and signals (SIGHUP reloads, SIGTERM drains), on real processes."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigurationError
from hosts.core.authority import Authority
from hosts.testing.ports import free_port, occupied
from hosts.testing.servers import (
    HOSTS,
    DevidServer,
    clean_env,
    devid_command,
    run_devid,
    start_devid_serve,
    tls_context,
)
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


EXTRA_PROVISIONER = """
[[provisioners]]
type = "ACME"
name = "reloaded-acme"
issuer = "tls"
challenges = ["http-01"]
allowed_domains = ["*"]
"""


def _provisioner_names(connection: http.client.HTTPSConnection) -> set[str]:
    connection.request("GET", "/provisioners")
    response = connection.getresponse()
    body: dict[str, Any] = json.loads(response.read())
    assert response.status == 200
    return {p["name"] for p in body["provisioners"]}


def _wait_for_log(server: DevidServer, logs: Path, text: str, count: int = 1) -> None:
    server.process.wait_until(
        lambda: logs.read_text(errors="replace").count(text) >= count,
        timeout=30,
        what=f"log {text!r}",
    )


SERVERS = [("quart", 1), ("raw", 1), ("raw", 2)]


@pytest.mark.parametrize(("host", "workers"), SERVERS, ids=["quart", "raw", "raw-2-workers"])
def test_sighup_reloads_devid_toml_without_dropping_connections(
    ca: CA, tmp_path: Path, host: str, workers: int
) -> None:
    logs = tmp_path / "serve.log"
    server = start_devid_serve(ca.data_dir, logs, host=host, workers=workers, env=_env(ca))
    try:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", server.port, context=tls_context(server.root_path), timeout=30
        )
        assert "reloaded-acme" not in _provisioner_names(connection)
        open_socket = connection.sock
        config = ca.data_dir / "devid.toml"
        original = config.read_text()
        config.write_text(original + EXTRA_PROVISIONER)
        os.kill(server.pid, signal.SIGHUP)
        _wait_for_log(server, logs, "reloaded: provisioners +1 -0", count=workers)
        # The same keep-alive connection answers, with the new provisioner.
        assert "reloaded-acme" in _provisioner_names(connection)
        assert connection.sock is open_socket

        # An invalid devid.toml is logged and the running configuration kept.
        config.write_text(original + "\n[[provisioners]]\ntype = 'NO-SUCH-TYPE'\nname = 'x'\n")
        os.kill(server.pid, signal.SIGHUP)
        _wait_for_log(server, logs, "reload failed", count=workers)
        assert "reloaded-acme" in _provisioner_names(connection)
        assert connection.sock is open_socket
        server.process.check_alive()
        connection.close()
    finally:
        server.stop()


def _read_response(stream: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = stream.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize(("host", "workers"), SERVERS, ids=["quart", "raw", "raw-2-workers"])
def test_sigterm_lets_a_request_in_flight_finish(
    ca: CA, tmp_path: Path, host: str, workers: int
) -> None:
    logs = tmp_path / "serve.log"
    server = start_devid_serve(ca.data_dir, logs, host=host, workers=workers, env=_env(ca))
    try:
        context = tls_context(server.root_path)
        context.set_alpn_protocols(["http/1.1"])
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        stream = context.wrap_socket(raw, server_hostname="127.0.0.1")
        body = b'{"csr": "not a csr", "ott": "not a token"}'
        stream.sendall(
            b"POST /1.0/sign HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10]
        )
        time.sleep(0.5)  # the request is being read when the server is told to stop
        server.process.process.send_signal(signal.SIGTERM)
        _wait_for_log(server, logs, "shutting down")
        time.sleep(0.5)
        stream.sendall(body[10:])
        response = _read_response(stream)
        assert response.startswith(b"HTTP/1.1 400"), response[:200]
        stream.close()
        assert server.process.process.wait(timeout=20) == 0
        assert "stopped" in logs.read_text()
    finally:
        server.stop()


def test_reload_counts_ek_roots_and_keeps_the_old_state_on_a_bad_config(
    authority: Authority, ca: CA
) -> None:
    roots = len(authority.attestation.policy.ek_roots)
    (ca.data_dir / "ek-roots" / "fleet.pem").write_bytes(ca.root_path.read_bytes())
    change = authority.reload()
    assert change.ek_roots == (roots, roots + 1)
    assert change.summary().startswith(f"provisioners +0 -0, ek roots {roots} -> {roots + 1}")

    config = ca.data_dir / "devid.toml"
    config.write_text(config.read_text() + "\n[[provisioners]]\ntype = 'JWK'\nname = 'admin'\n")
    provisioners = dict(authority.provisioners)
    with pytest.raises(ConfigurationError, match="two provisioners"):
        authority.reload()
    assert authority.provisioners == provisioners
    assert len(authority.attestation.policy.ek_roots) == roots + 1


def test_an_unreadable_file_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from hosts.cli import main, server_commands

    key = str(tmp_path / "secrets" / "root_ca.key")

    def unreadable(_args: object) -> int:
        raise PermissionError(13, "Permission denied", key)

    monkeypatch.setattr(server_commands, "cmd_plugins", unreadable)
    monkeypatch.delenv("DEVID_DEBUG", raising=False)
    assert main(["plugins"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert key in err[0] and "0600" in err[0]
    with pytest.raises(PermissionError):
        main(["--debug", "plugins"])
    with pytest.raises(PermissionError):
        main(["plugins", "--debug"])


def test_a_failed_bind_inside_exception_groups_is_found() -> None:
    import errno

    from hosts.cli.server_commands import _first_os_error, _listen_error

    busy = OSError(errno.EADDRINUSE, "Address already in use")
    wrapped = BaseExceptionGroup("nursery", [BaseExceptionGroup("inner", [busy])])
    assert _first_os_error(wrapped) is busy
    assert _first_os_error(BaseExceptionGroup("x", [ValueError("no")])) is None
    line = str(_listen_error("127.0.0.1:8443", busy))
    assert line == (
        "devid serve: cannot listen on 127.0.0.1:8443: address already in use — stop the"
        " other server or choose another with --listen HOST:PORT"
    )
