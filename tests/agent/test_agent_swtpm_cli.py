"""`devid agent swtpm start|status|stop` by subprocess, as an operator runs it.

Every swtpm started here is stopped at teardown by the ``swtpm_cli`` fixture,
whatever the test did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from agent.swtpm import free_port_pair
from hosts.testing.ports import listening, occupied

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.swtpm import SwtpmCLI

pytest_plugins = ["tests.swtpm"]

NOT_RUNNING = 3


def field(stdout: str, label: str) -> str:
    """The value printed after ``label:`` on its own line."""
    for line in stdout.splitlines():
        if line.startswith(f"{label}:"):
            return line.split(":", 1)[1].split("  (")[0].strip()
    raise AssertionError(f"no {label!r} line in:\n{stdout}")


def agent_info(cli: SwtpmCLI, tcti: str) -> dict[str, Any]:
    result = cli.devid("agent", "info", "--tcti", tcti, "--json")
    record: dict[str, Any] = json.loads(result.stdout)
    return record


def assert_one_line_error(result: Any, *fragments: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("devid: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_start_status_stop(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    directory = tmp_path / "tpm"
    port = free_port_pair()
    started = swtpm_cli.start(directory, port)
    out = started.stdout
    assert f"Set up a new software TPM in {directory} (EK: rsa)" in out
    assert "Started swtpm (pid " in out
    tcti = field(out, "TCTI")
    assert tcti == f"swtpm:host=127.0.0.1,port={port}"
    bundle = Path(field(out, "EK CA bundle"))
    assert bundle == directory / "ek-ca-bundle.pem"
    root, intermediate = x509.load_pem_x509_certificates(bundle.read_bytes())
    assert root.subject == root.issuer  # self-signed
    assert intermediate.issuer == root.subject
    assert f"cp {bundle} data/ek-roots/" in out
    assert f"export DEVID_TCTI={tcti}" in out
    assert f"devid agent swtpm stop --dir {directory}" in out
    assert oct(directory.stat().st_mode & 0o777) == "0o700"  # it holds the local CA's key

    pid = int((directory / "swtpm.pid").read_text())
    assert str(pid) in out
    info = agent_info(swtpm_cli, tcti)
    assert info["ekTemplate"] == "L-1"
    assert info["ekCertificate"]["issuer"] == "CN=swtpm-localca"

    status = swtpm_cli.status(directory)
    assert status.returncode == 0, status.stderr
    assert f"swtpm is running on {directory} (pid {pid})" in status.stdout
    assert field(status.stdout, "TCTI") == tcti
    record = json.loads(swtpm_cli.status(directory, "--json").stdout)
    assert record == {
        "directory": str(directory),
        "running": True,
        "pid": pid,
        "port": port,
        "tcti": tcti,
        "ekType": "rsa",
        "ekCaBundle": str(bundle),
    }

    stopped = swtpm_cli.stop(directory)
    assert stopped.stdout.strip() == f"Stopped swtpm (pid {pid}) on {directory}"
    assert not (directory / "swtpm.pid").exists()
    assert not listening(port)  # nothing listens any more
    status = swtpm_cli.status(directory)
    assert status.returncode == NOT_RUNNING
    assert f"swtpm is not running on {directory} (EK: rsa)" in status.stdout


def test_second_start_says_it_runs_and_exits_0(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    directory = tmp_path / "tpm"
    port = free_port_pair()
    swtpm_cli.start(directory, port)
    pid = (directory / "swtpm.pid").read_text().strip()
    again = swtpm_cli.start(directory, free_port_pair())  # another port: still the same one
    assert again.stdout.splitlines()[0] == f"swtpm is already running on {directory} (pid {pid})"
    assert field(again.stdout, "TCTI") == f"swtpm:host=127.0.0.1,port={port}"
    assert (directory / "swtpm.pid").read_text().strip() == pid


def test_restart_keeps_the_same_ek(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    directory = tmp_path / "tpm"
    first = field(swtpm_cli.start(directory).stdout, "TCTI")
    urn = agent_info(swtpm_cli, first)["ek"]
    bundle = (directory / "ek-ca-bundle.pem").read_bytes()
    swtpm_cli.stop(directory)

    restarted = swtpm_cli.start(directory)  # on another port
    assert "Set up a new software TPM" not in restarted.stdout
    second = field(restarted.stdout, "TCTI")
    assert second != first
    assert agent_info(swtpm_cli, second)["ek"] == urn
    assert (directory / "ek-ca-bundle.pem").read_bytes() == bundle


def test_stop_is_idempotent(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    directory = tmp_path / "tpm"
    never = swtpm_cli.stop(tmp_path / "never-started")
    assert never.stdout.strip() == f"swtpm is not running on {tmp_path / 'never-started'}"
    assert not (tmp_path / "never-started").exists()  # stop creates nothing

    swtpm_cli.start(directory)
    assert swtpm_cli.stop(directory).stdout.startswith("Stopped swtpm (pid ")
    for _ in range(2):
        again = swtpm_cli.stop(directory)
        assert again.stdout.strip() == f"swtpm is not running on {directory}"


def test_a_stale_pid_file_is_not_a_running_swtpm(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    directory = tmp_path / "tpm"
    swtpm_cli.start(directory)
    swtpm_cli.stop(directory)
    (directory / "swtpm.pid").write_text(f"{os.getpid()}\n")  # alive, but not a swtpm
    assert swtpm_cli.status(directory).returncode == NOT_RUNNING
    assert "Started swtpm" in swtpm_cli.start(directory).stdout


def test_ecc_ek_and_the_ek_type_is_fixed(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    directory = tmp_path / "tpm"
    out = swtpm_cli.start(directory, None, "--ek", "ecc").stdout
    assert "(EK: ecc)" in out
    info = agent_info(swtpm_cli, field(out, "TCTI"))
    assert info["ekTemplate"] == "H-3"
    assert info["ekCertificate"]["nvIndex"] == "0x01c00016"
    swtpm_cli.stop(directory)

    refused = swtpm_cli.start(directory, None, "--ek", "rsa", check=False)
    assert_one_line_error(refused, "was set up with --ek ecc", "its EK cannot change")
    assert swtpm_cli.status(directory).returncode == NOT_RUNNING


def test_start_json(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    directory = tmp_path / "tpm"
    port = free_port_pair()
    record = json.loads(swtpm_cli.start(directory, port, "--ek", "both", "--json").stdout)
    assert record["running"] is True
    assert record["tcti"] == f"swtpm:host=127.0.0.1,port={port}"
    assert record["ekType"] == "both"
    assert record["created"] is True
    assert record["alreadyRunning"] is False
    assert Path(record["ekCaBundle"]).is_file()


def test_port_in_use_is_a_one_line_error(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    directory = tmp_path / "tpm"
    port = free_port_pair()
    with occupied(port + 1):  # the control port
        result = swtpm_cli.start(directory, port, check=False)
    assert_one_line_error(result, f"port {port + 1} is in use on 127.0.0.1", "--port")
    assert "Traceback" not in result.stdout + result.stderr
    assert swtpm_cli.status(directory).returncode == NOT_RUNNING
    assert "Started swtpm" in swtpm_cli.start(directory, port).stdout  # set up, so now it runs


def test_a_foreign_directory_is_refused(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = swtpm_cli.start(tmp_path, check=False)
    assert_one_line_error(result, "is not empty and holds no swtpm set up by devid")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_without_swtpm_installed_says_how_to_get_it(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    swtpm_cli.env["PATH"] = str(tmp_path / "empty-bin")
    result = swtpm_cli.start(tmp_path / "tpm", check=False)
    assert_one_line_error(
        result, "swtpm is not installed", "make test", "apt-get install swtpm swtpm-tools"
    )
    assert not (tmp_path / "tpm" / "swtpm.json").exists()
