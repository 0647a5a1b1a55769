"""``devid demo``: the whole device flow on one machine, told step by step.

A fresh CA (``devid init``) in a temporary directory, the quart host on a free
loopback port, a software TPM (swtpm) whose EK CA the CA trusts, the device
registered, a Wi-Fi and a VPN account assigned to it, and the agent
(``devid agent run``'s pass) until it holds both account certificates. Then
everything stops and the temporary directory is removed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from agent.cli import general_names

TIMEOUT = 60.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole flow on this machine: CA, swtpm device, accounts, agent",
        description="Start a throw-away CA and a software TPM, register the device, create"
        " a Wi-Fi and a VPN account, run the agent until it holds both certificates, show"
        " every step and the resulting chains, and stop everything.",
    )
    p.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="work in DIR (created, kept afterwards) instead of a temporary directory",
    )
    p.set_defaults(func=cmd_demo)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(number: int, text: str) -> None:
    _say()
    _say(f"[{number}] {text}")


def _describe_chain(chain: list[x509.Certificate], indent: str = "      ") -> None:
    for index, cert in enumerate(chain):
        _say(f"{indent}[{index}] subject:  {cert.subject.rfc4514_string() or '(empty)'}")
        _say(f"{indent}    issuer:   {cert.issuer.rfc4514_string()}")
        _say(
            f"{indent}    validity: {cert.not_valid_before_utc.isoformat()}"
            f" .. {cert.not_valid_after_utc.isoformat()}"
        )
        names = general_names(cert)
        if names:
            _say(f"{indent}    SANs:     {', '.join(names)}")
        _say(f"{indent}    SHA-256:  {cert.fingerprint(hashes.SHA256()).hex(':').upper()[:47]}...")


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.state import AgentError
    from agent.swtpm import missing_tools

    missing = missing_tools()
    if missing:
        print(
            f"devid: the demo needs swtpm ({', '.join(missing)} not found on PATH);"
            " run `make serve`'s set-up (or apt-get install swtpm swtpm-tools) first",
            file=sys.stderr,
        )
        return 1
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        work = args.keep
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="devid-demo-")
        work = Path(cleanup.name)
    try:
        import trio

        return trio.run(_demo, work)
    except AgentError as exc:
        print(f"devid: the demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if cleanup is not None:
            cleanup.cleanup()


async def _demo(work: Path) -> int:
    import trio

    from agent.daemon import Agent
    from agent.swtpm import SwtpmDirectory, free_port_pair
    from agent.tpm import TPM
    from hosts.core.authority import Authority
    from hosts.core.init import init_data_dir
    from hosts.core.secrets import require_password, resolve_password
    from hosts.quart import serve

    started = time.monotonic()
    data, tpm_dir = work / "data", work / "tpm"
    state, out = work / "agent-state", work / "agent-out"
    _say("devid demo: a device proven by its TPM gets Wi-Fi and VPN certificates, no password.")
    _say(f"Working in {work}")

    _step(1, "devid init: a new CA (root, Attestation CA, Agent CA, Account CA, TLS CA)")
    result = init_data_dir(data, resolve_password(data, None))
    password = require_password(data, None)
    _say(f"      data directory: {data}")
    _say(f"      root:           {result.root_path} (SHA-256 {result.root_fingerprint[:16]}...)")

    _step(2, "A software TPM (swtpm) stands in for the device's TPM")
    swtpm = SwtpmDirectory(tpm_dir)
    await trio.to_thread.run_sync(swtpm.set_up, "rsa")
    running = await trio.to_thread.run_sync(swtpm.start, free_port_pair())
    try:
        _say(f"      swtpm pid {running.pid}, TCTI {running.tcti}")
        ek_roots = data / "ek-roots"
        ek_roots.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(swtpm.bundle, ek_roots / "swtpm.pem")
        _say(f"      the CA trusts its EK CA: {swtpm.bundle} -> {ek_roots / 'swtpm.pem'}")

        def ek_urn() -> str:
            with TPM(running.tcti) as tpm:
                return tpm.endorsement_key().urn

        urn = await trio.to_thread.run_sync(ek_urn)
        _say(f"      EK URN: {urn}")
        code = await _with_server(
            data,
            result.root_path,
            password.value,
            running.tcti,
            urn,
            state,
            out,
            Agent,
            Authority,
            serve,
        )
    finally:
        await trio.to_thread.run_sync(swtpm.stop)
        _say(f"      swtpm stopped (pid {running.pid})")
    _say(f"Done in {time.monotonic() - started:.1f} s.")
    return code


async def _with_server(
    data: Path,
    root: Path,
    password: bytes,
    tcti: str,
    urn: str,
    state: Path,
    out: Path,
    agent_class: Any,
    authority_class: Any,
    serve: Any,
) -> int:
    import trio

    from agent.state import AgentError

    authority = authority_class.load(data, password)
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            urls: list[str] = await nursery.start(
                lambda task_status: serve(
                    authority, "127.0.0.1:0", shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            url = next(u for u in urls if "127.0.0.1" in u)
            try:
                _step(3, "devid serve: the CA runs (quart host, HTTPS)")
                _say(f"      listening on {url}")

                _step(4, "devid device add: register the device by its EK")
                device = authority.inventory.add({"ek": urn, "name": "demo-laptop"})
                _say(f"      {device.ek_urn} as {device.name!r}")

                _step(5, "devid account add: a Wi-Fi and a VPN account for the device")
                wifi = authority.accounts.add(
                    {
                        "name": "corp-wifi",
                        "type": "wifi",
                        "commonName": "{device.name}",
                        "validity": "24h",
                        "devices": [urn],
                    }
                )
                vpn = authority.accounts.add(
                    {
                        "name": "site-vpn",
                        "type": "vpn",
                        "commonName": "{device.name}.vpn.example",
                        "sans": ["dns:{device.name}.vpn.example"],
                        "tpmKey": False,
                        "pkcs12": True,
                        "validity": "24h",
                        "devices": [urn],
                    }
                )
                for account in (wifi, vpn):
                    _say(
                        f"      {account.name} ({account.type.value}): provisioner"
                        f" {account.provisioner_name}, key in TPM: {account.tpm_key}"
                    )

                _step(6, "devid agent run: attest, enrol (ACME device-attest-01), accounts")
                agent = agent_class(
                    ca_url=url,
                    root=root,
                    tcti=tcti,
                    state=state,
                    out=out,
                    on_event=lambda message: _say(f"      agent: {message}"),
                )
                deadline = time.monotonic() + TIMEOUT
                while True:
                    pass_result = await trio.to_thread.run_sync(agent.run_pass)
                    for error in pass_result.errors:
                        _say(f"      agent: {error}")
                    if pass_result.ok and agent.complete() and len(agent.certificates) == 2:
                        break
                    if time.monotonic() > deadline:
                        raise AgentError("the agent did not get both certificates in time")
                    await trio.sleep(max(0.2, min(agent.seconds_to_next(), 5.0)))

                _step(7, "The results")
                assert agent.enrollment is not None
                _say("      Device certificate (in the agent's memory only, never on disk):")
                _describe_chain(list(agent.enrollment.chain))
                for name, issued in sorted(agent.certificates.items()):
                    _say(f"      Account {name}: {', '.join(str(p) for p in issued.files)}")
                    _describe_chain(issued.chain)
            finally:
                _step(8, "Stopping everything")
                stop.set()
    finally:
        authority.close()
    _say("      CA stopped")
    return 0
