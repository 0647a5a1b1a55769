"""A device's ``devid agent ...`` loads the agent and the engine, never the server.

Each command runs in a fresh interpreter (the venv's, as the ``devid`` console script
runs it), through ``hosts.cli:main``; the interpreter then reports every module it
loaded. None may be the web framework or the HTTP server (quart, quart_trio,
hypercorn), SQLite, or any of ``hosts`` beyond the dispatcher (``hosts.cli``): no
store, no CA service, no validation, no host. Nor may it be the CA's side of the
plugins: pluggy, the plugin manager or a provisioner type (a device mints its
tokens with ``plugins.minting``). Importing every module of ``agent`` loads none
of these either.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme

from agent import cli as agent_cli
from hosts.testing.ports import free_port
from hosts.testing.servers import clean_env

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.swtpm import Swtpm

pytest_plugins = ["tests.swtpm"]

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Top-level packages of the server's framework and store.
SERVER_PACKAGES = frozenset({"quart", "quart_trio", "hypercorn", "sqlite3", "_sqlite3"})
#: What of ``hosts`` a device may load: the package and the dispatcher.
DISPATCHER = frozenset({"hosts", "hosts.cli", "hosts.cli.__main__"})
#: The CA's side of the plugins, with everything below each: the plugin machinery and
#: the provisioner types.
CA_PLUGINS = (
    "pluggy",
    "plugins.manager",
    "plugins.x5c",
    "plugins.jwk",
    "plugins.acme",
    "plugins.accounts",
)

#: Run in the child: ``devid ARGS...`` exactly as the console script does (its
#: ``main``), then one JSON line with the exit code and the loaded modules. The
#: command's own output goes to stderr so stdout holds only that line.
RUN_DEVID = """\
import contextlib, json, sys
from hosts.cli import main
with contextlib.redirect_stdout(sys.stderr):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def server_modules(modules: list[str]) -> list[str]:
    return [
        name
        for name in modules
        if name.split(".")[0] in SERVER_PACKAGES
        or (name.startswith("hosts.") and name not in DISPATCHER)
        or any(name == top or name.startswith(f"{top}.") for top in CA_PLUGINS)
    ]


def devid_in_child(*args: str | Path) -> tuple[int, list[str], str]:
    """Run ``devid ARGS`` in a new interpreter: (exit code, loaded modules, its output)."""
    result = subprocess.run(
        [sys.executable, "-c", RUN_DEVID, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=clean_env(COLUMNS="100"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report["code"], report["modules"], result.stderr


def assert_lean(modules: list[str]) -> None:
    assert not server_modules(modules), server_modules(modules)


#: Run in the child: import the modules named, then print every module loaded (JSON).
IMPORT_MODULES = """\
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def agent_modules() -> list[str]:
    """Every module of the ``agent`` package."""
    package = REPO_ROOT / "agent"
    return ["agent", *sorted(f"agent.{path.stem}" for path in package.glob("[!_]*.py"))]


def agent_help_commands() -> list[list[str]]:
    """``agent --help`` and ``--help`` of every agent command, however deep."""
    top = argparse.ArgumentParser(prog="devid")
    agent_cli.register(top.add_subparsers())
    out: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        out.append([*path, "--help"])
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, [*path, name])

    walk(top, [])
    return [argv for argv in out if argv[0] == "agent"]


def test_the_console_script_is_the_entry_point_run_here() -> None:
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["devid"] == "hosts.cli:main"


def test_importing_the_agent_loads_nothing_of_the_server_or_the_ca_plugins() -> None:
    pytest.importorskip("tpm2_pytss")  # agent.tpm needs it, as devid[agent] installs it
    names = agent_modules()
    assert {"agent.accounts", "agent.cli", "agent.daemon", "agent.tpm"} <= set(names)
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_MODULES, *names],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=clean_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout)
    assert set(names) <= set(modules)
    assert "plugins.minting" in modules  # how agent.accounts mints its x5c tokens
    assert_lean(modules)


def test_the_checks_recognise_the_ca_plugins() -> None:
    flagged = ["pluggy", "pluggy._hooks", "plugins.x5c", "plugins.x5c.tokens", "plugins.manager"]
    allowed = ["plugins", "plugins.minting", "plugins.jwkish", "agent.accounts", "hosts.cli"]
    assert server_modules(flagged + allowed) == flagged


def test_every_agent_command_is_covered() -> None:
    commands = {" ".join(argv[:-1]) for argv in agent_help_commands()}
    assert {"agent", "agent info", "agent attest", "agent enroll", "agent run"} <= commands
    assert {"agent swtpm start", "agent swtpm stop", "agent swtpm status"} <= commands


@pytest.mark.parametrize("argv", agent_help_commands(), ids=" ".join)
def test_agent_help_loads_nothing_of_the_server(argv: list[str]) -> None:
    code, modules, output = devid_in_child(*argv)
    assert code == 0
    assert output.startswith(f"usage: devid {' '.join(argv[:-1])}")
    assert "agent.cli" in modules
    assert_lean(modules)


def test_swtpm_status_on_an_empty_directory_loads_nothing_of_the_server(tmp_path: Path) -> None:
    code, modules, output = devid_in_child("agent", "swtpm", "status", "--dir", tmp_path / "tpm")
    assert code == 3  # not running
    assert "no software TPM is set up" in output
    assert_lean(modules)


def test_a_command_that_stops_before_the_tpm_loads_nothing_of_the_server() -> None:
    code, modules, output = devid_in_child("agent", "attest", "--ca", "", "--root", "root.pem")
    assert code == 1 and "--ca URL" in output
    assert_lean(modules)


def test_an_unreachable_tpm_loads_the_tpm_library_and_nothing_of_the_server() -> None:
    pytest.importorskip("tpm2_pytss")
    code, modules, output = devid_in_child("agent", "info", "--tcti", "swtpm:host=127.0.0.1,port=1")
    assert code == 1 and "cannot open the TPM" in output
    assert "agent.tpm" in modules and "tpm2_pytss" in modules
    assert_lean(modules)


def test_a_pass_of_the_agent_loads_nothing_of_the_server(swtpm_rsa: Swtpm, tmp_path: Path) -> None:
    """``devid agent run --once`` with a real (software) TPM: it opens the TPM, reads the
    EK and starts to attest, then finds no CA at the URL; everything enrolling and
    renewing use is loaded by then."""
    root = tmp_path / "root.crt"
    trustme.CA().cert_pem.write_to_path(str(root))
    code, modules, output = devid_in_child(
        "agent",
        "run",
        "--once",
        "--ca",
        f"https://127.0.0.1:{free_port()}",
        "--root",
        root,
        "--tcti",
        swtpm_rsa.tcti,
        "--state",
        tmp_path / "state",
        "--out",
        tmp_path / "certs",
    )
    assert code == 1 and "the pass did not complete" in output
    assert "enrolling the device failed" in output
    for module in ("agent.daemon", "agent.enroll", "agent.attestation", "agent.tpm", "trio"):
        assert module in modules
    assert_lean(modules)


def test_devid_help_lists_every_command_without_importing_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, modules, output = devid_in_child("--help")
    assert code == 0
    assert not [name for name in modules if name.startswith(("hosts.cli.", "agent."))]
    assert_lean(modules)
    # The light listing says what the command modules themselves register.
    from hosts.cli import build_parser

    monkeypatch.setenv("COLUMNS", "100")
    assert output == build_parser().format_help()


def test_fetching_the_root_loads_nothing_of_the_server(tmp_path: Path) -> None:
    """``devid ca root``, how a device gets the root it trusts, is client-side too."""
    code, modules, output = devid_in_child(
        "ca",
        "root",
        tmp_path / "root.crt",
        "--fingerprint",
        "00",
        "--ca-url",
        f"https://127.0.0.1:{free_port()}",
    )
    assert code == 1, output
    assert "hosts.cli.ca_commands" in modules
    # The client commands' own modules (and their shared options), nothing else of hosts.
    client = ("hosts.cli.ca_commands", "hosts.cli.client_options")
    assert "hosts.cli.login_commands" not in modules
    assert_lean([name for name in modules if name not in client])
