"""The device's command line: ``devid agent info``, ``devid agent attest``, ``devid agent
enroll``, ``devid agent run`` and ``devid agent swtpm start|stop|status`` (a software TPM
standing in for a device's).

``devid`` imports this module, and no other command module, when the command is
``agent``: a device loads the agent, the engine and the HTTP client, never the server
(no web framework, host or store). ``tests/agent/test_agent_lean.py`` checks that, and
the layering test that nothing here imports ``hosts``.

The TPM library (tpm2-pytss, the ``agent`` extra) is imported only when a command
talks to the TPM, so ``--help`` works where it is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from agent.state import AgentError, AgentState
from agent.swtpm import DEFAULT_PORT, RunningSwtpm, SwtpmDirectory

if TYPE_CHECKING:
    from agent.tpm import TPM

DEFAULT_STATE = Path("/var/lib/devid-agent")


def _default_tcti() -> str:
    return (
        os.environ.get("DEVID_TCTI")
        or os.environ.get("TPM2TOOLS_TCTI")
        or os.environ.get("TCTI")
        or "device:/dev/tpmrm0"
    )


def _add_ca_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ca",
        default=os.environ.get("DEVID_CA_URL"),
        metavar="URL",
        help="the CA's URL, e.g. https://ca.example.com:8443 (default $DEVID_CA_URL)",
    )


def _add_root_and_state(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ["DEVID_ROOT"]) if os.environ.get("DEVID_ROOT") else None,
        metavar="FILE",
        help="the CA's root certificate, PEM (default $DEVID_ROOT)",
    )
    p.add_argument(
        "--state",
        type=Path,
        default=Path(os.environ.get("DEVID_AGENT_STATE", str(DEFAULT_STATE))),
        metavar="DIR",
        help=f"the agent's state directory (default $DEVID_AGENT_STATE, else {DEFAULT_STATE})",
    )


def _add_tpm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tcti",
        default=_default_tcti(),
        help="how to reach the TPM, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321"
        " (default $DEVID_TCTI, else $TPM2TOOLS_TCTI, else device:/dev/tpmrm0)",
    )
    parser.add_argument(
        "--ek",
        choices=["rsa", "ecc"],
        default=None,
        help="which EK to use when the TPM has several (default: RSA if it has an RSA EK"
        " certificate)",
    )


def register(sub: Any) -> None:
    agent = sub.add_parser("agent", help="the device agent: TPM identity and AK attestation")
    agent_sub = agent.add_subparsers(dest="agent_command", metavar="COMMAND")
    agent.set_defaults(func=lambda _args: _help(agent))

    p = agent_sub.add_parser(
        "info",
        help="show the TPM's EK URN and what an operator needs to register the device",
    )
    _add_tpm_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = agent_sub.add_parser(
        "attest",
        help="get an AK certificate from the Attestation CA and keep it in the state directory",
    )
    _add_tpm_options(p)
    _add_ca_options(p)
    _add_root_and_state(p)
    p.add_argument(
        "--ak-type", choices=["ecc", "rsa"], default="ecc", help="AK key type (default ecc)"
    )
    p.set_defaults(func=cmd_attest)

    _register_enroll(agent_sub)
    _register_run(agent_sub)
    _register_poke(agent_sub)
    _register_swtpm(agent_sub)


def _register_run(agent_sub: Any) -> None:
    p = agent_sub.add_parser(
        "run",
        help="the agent: enrol, then get and renew the certificates of the device's accounts",
        description="Attest if needed, enrol through ACME device-attest-01 (the device"
        " certificate stays in memory), list the device's accounts and deliver their"
        " certificates to --out, renewing at two thirds of each lifetime; removes from --out"
        " the files of accounts no longer assigned. Stops on SIGTERM; SIGUSR1 (`devid agent"
        " poke`) runs a pass at once; SIGHUP drops the back-off, reads --root again and lists"
        " the accounts again.",
    )
    _add_tpm_options(p)
    _add_ca_options(p)
    _add_root_and_state(p)
    p.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("DEVID_AGENT_OUT", "/var/lib/devid-agent/certs")),
        metavar="DIR",
        help="where account certificates (and software keys) are delivered"
        " (default $DEVID_AGENT_OUT, else /var/lib/devid-agent/certs)",
    )
    p.add_argument(
        "--once", action="store_true", help="one full pass, then exit (0 if it fully worked)"
    )
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    if not args.ca:
        return _fail("pass --ca URL (or set DEVID_CA_URL)")
    if args.root is None:
        return _fail("pass --root FILE (get it with `devid ca root`)")
    import trio

    from agent.daemon import Agent, configure_logging, run

    configure_logging()
    agent = Agent(
        ca_url=args.ca, root=args.root, tcti=args.tcti, state=args.state, out=args.out, ek=args.ek
    )
    code = trio.run(lambda: run(agent, once=args.once))
    if args.once and code != 0:
        return _fail("the pass did not complete (see the log above)")
    return code


def _register_poke(agent_sub: Any) -> None:
    p = agent_sub.add_parser(
        "poke",
        help="make the running `devid agent run` do a pass now (SIGUSR1)",
        description="Send SIGUSR1 to the agent running on --state DIR (its pid is in"
        " DIR/agent.pid): it lists the device's accounts again and gets what is missing or"
        " due at once, instead of at its next scheduled pass.",
    )
    p.add_argument(
        "--state",
        type=Path,
        default=Path(os.environ.get("DEVID_AGENT_STATE", str(DEFAULT_STATE))),
        metavar="DIR",
        help=f"the agent's state directory (default $DEVID_AGENT_STATE, else {DEFAULT_STATE})",
    )
    p.set_defaults(func=cmd_poke)


def cmd_poke(args: argparse.Namespace) -> int:
    import signal

    try:
        pid = AgentState(args.state).running_pid()
        os.kill(pid, signal.SIGUSR1)
    except AgentError as exc:
        return _fail(str(exc))
    except PermissionError:
        return _fail(f"not allowed to signal the agent ({args.state}/agent.pid): run as its user")
    print(f"poked the agent (pid {pid}): a pass starts now")
    return 0


def _register_enroll(agent_sub: Any) -> None:
    p = agent_sub.add_parser(
        "enroll",
        help="get a device certificate from the Agent CA through ACME device-attest-01",
        description="Order a certificate for this device's permanent identifier, prove it"
        " with a new TPM key certified by the AK, and show the certificate. The certificate"
        " is held in memory only and is gone when the command exits; `devid agent run`"
        " keeps it and uses it.",
    )
    _add_tpm_options(p)
    p.add_argument(
        "--acme",
        default=os.environ.get("DEVID_ACME_URL"),
        metavar="DIRECTORY_URL",
        help="the ACME directory, e.g. https://ca.example.com:8443/acme/devices/directory"
        " (default $DEVID_ACME_URL, else the `devices` provisioner of --ca URL)",
    )
    _add_root_and_state(p)
    p.add_argument(
        "--ca",
        default=os.environ.get("DEVID_CA_URL"),
        metavar="URL",
        help="the CA's URL, to attest first when the state directory has no AK certificate"
        " (default $DEVID_CA_URL)",
    )
    p.add_argument(
        "--ak-type",
        choices=["ecc", "rsa"],
        default="ecc",
        help="AK key type when attesting first (default ecc)",
    )
    p.add_argument(
        "--contact",
        action="append",
        default=[],
        metavar="URI",
        help="a contact for the ACME account, e.g. mailto:ops@example.com (repeatable)",
    )
    p.add_argument(
        "--print-pem",
        action="store_true",
        help="also print the certificate chain as PEM on stdout (it is never written to a file)",
    )
    p.set_defaults(func=cmd_enroll)


def _register_swtpm(agent_sub: Any) -> None:
    swtpm = agent_sub.add_parser(
        "swtpm",
        help="a software TPM (swtpm) standing in for a device's TPM: start, stop, status",
        description="Run swtpm, with EK certificates from its own small CA, in the background"
        " on 127.0.0.1. DIR keeps the TPM state and that CA, so the EK stays the same from"
        " one start to the next.",
    )
    swtpm_sub = swtpm.add_subparsers(dest="swtpm_command", metavar="COMMAND")
    swtpm.set_defaults(func=lambda _args: _help(swtpm))

    p = swtpm_sub.add_parser(
        "start",
        help="set DIR up on first use, then start swtpm in the background",
    )
    p.add_argument("--dir", type=Path, required=True, help="the swtpm's directory")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port for TPM commands on 127.0.0.1; PORT+1 is the control port"
        f" (default {DEFAULT_PORT})",
    )
    p.add_argument(
        "--ek",
        choices=["rsa", "ecc", "both"],
        default=None,
        help="the EK(s) a new TPM gets: RSA-2048, ECC P-384, or both (default rsa;"
        " fixed once DIR is set up)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_swtpm_start)

    p = swtpm_sub.add_parser("stop", help="stop the swtpm running on DIR")
    p.add_argument("--dir", type=Path, required=True, help="the swtpm's directory")
    p.set_defaults(func=cmd_swtpm_stop)

    p = swtpm_sub.add_parser(
        "status", help="whether the swtpm on DIR runs, and its TCTI (exit 3 if it does not)"
    )
    p.add_argument("--dir", type=Path, required=True, help="the swtpm's directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_swtpm_status)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _fail(message: str) -> int:
    print(f"devid: {message}", file=sys.stderr)
    return 1


def _open_tpm(tcti: str) -> TPM:
    # ESYS logs every TPM error response to stderr by itself; errors are reported here.
    os.environ.setdefault("TSS2_LOG", "all+none")
    try:
        from agent.tpm import TPM
    except ImportError as exc:
        raise AgentError(
            f"the agent needs tpm2-pytss (pip install 'devid[agent]'): {exc}"
        ) from None
    return TPM(tcti)


def _name(cert: Any) -> str:
    try:
        return str(cert.rfc4514_string())
    except ValueError:
        return "(unreadable)"


def info_record(tcti: str, ek_algorithm: str | None) -> dict[str, Any]:
    """Everything ``devid agent info`` shows, EK URN first."""
    with _open_tpm(tcti) as tpm:
        ek = tpm.endorsement_key(algorithm=ek_algorithm)  # type: ignore[arg-type]
        info = tpm.info()
    cert = ek.certificate
    certificate: dict[str, Any] | None = None
    if cert is not None:
        parsed = cert.certificate
        certificate = {
            "nvIndex": f"0x{cert.nv_index:08x}",
            "subject": _name(parsed.subject) if parsed else None,
            "issuer": _name(parsed.issuer) if parsed else None,
            "serial": str(parsed.serial_number) if parsed else None,
            "notAfter": parsed.not_valid_after_utc.isoformat() if parsed else None,
        }
    return {
        "ek": ek.urn,
        "ekTemplate": ek.template.value,
        "ekCertificate": certificate,
        "tpm": {
            "manufacturer": info.manufacturer_ascii,
            "manufacturerId": info.manufacturer,
            "model": info.vendor,
            "firmwareVersion": info.firmware_version,
        },
        "register": f"devid device add --ek {ek.urn}",
    }


def cmd_info(args: argparse.Namespace) -> int:
    try:
        record = info_record(args.tcti, args.ek)
    except AgentError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    tpm = record["tpm"]
    cert = record["ekCertificate"]
    lines = [
        f"EK URN:            {record['ek']}",
        f"EK template:       {record['ekTemplate']}",
    ]
    if cert is not None:
        lines += [
            f"EK certificate:    {cert['subject'] or '(unreadable)'} (NV {cert['nvIndex']})",
            f"  issued by:       {cert['issuer'] or '(unreadable)'}",
        ]
    else:
        lines.append("EK certificate:    none in NV")
    lines += [
        f"TPM manufacturer:  {tpm['manufacturer']} (0x{tpm['manufacturerId']:08X})",
        f"TPM model:         {tpm['model']}",
        f"TPM firmware:      {tpm['firmwareVersion']}",
        "",
        "Register this device on the CA host with:",
        f"  {record['register']}",
    ]
    print("\n".join(lines))
    return 0


def cmd_attest(args: argparse.Namespace) -> int:
    if not args.ca:
        return _fail("pass --ca URL (or set DEVID_CA_URL)")
    if args.root is None:
        return _fail("pass --root FILE (get it with `devid ca root`)")
    try:
        with _open_tpm(args.tcti) as tpm:
            from agent.attestation import attest
            from agent.tpm import KeyAlgorithm

            chain = attest(
                args.ca,
                args.root,
                tpm,
                args.state,
                ak_algorithm=KeyAlgorithm(args.ak_type),
                ek_algorithm=args.ek,
            )
    except AgentError as exc:
        return _fail(str(exc))
    state = AgentState(args.state)
    print(f"AK certificate:  {state.certificate_path}")
    print(f"AK chain:        {state.chain_path}")
    print(f"Serial:          {chain[0].serial_number:x}")
    print(f"Valid until:     {chain[0].not_valid_after_utc.isoformat()}")
    print()
    print("Inspect it with:")
    print(f"  openssl x509 -in {state.certificate_path} -noout -text")
    return 0


def general_names(cert: x509.Certificate) -> list[str]:
    """The SAN entries of a certificate, one readable string each."""
    from engine.attestation.akcert import PERMANENT_IDENTIFIER_OID, identities_of_ak_certificate

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError:
        return ["(unreadable)"]
    out: list[str] = []
    prefixes: dict[type[x509.GeneralName], str] = {
        x509.DNSName: "DNS",
        x509.UniformResourceIdentifier: "URI",
        x509.RFC822Name: "email",
        x509.IPAddress: "IP",
    }
    for name in san:
        prefix = prefixes.get(type(name))
        if prefix is not None:
            out.append(f"{prefix}:{name.value}")
        elif isinstance(name, x509.DirectoryName):
            out.append(f"dirName:{_name(name.value)}")
        elif not (isinstance(name, x509.OtherName) and name.type_id == PERMANENT_IDENTIFIER_OID):
            out.append(f"{type(name).__name__}")
    try:
        permanent = identities_of_ak_certificate(cert).permanent_identifiers
    except Exception:
        permanent = ()
    return [f"PermanentIdentifier:{value}" for value in permanent] + out


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def enrollment_lines(chain: list[x509.Certificate]) -> list[str]:
    """What ``devid agent enroll`` shows about the chain (never the PEM unless asked)."""
    leaf = chain[0]
    sans = general_names(leaf) or ["(none)"]
    lines = [
        "Device certificate (held in memory only; nothing was written to disk):",
        f"  Subject:      {_name(leaf.subject) or '(empty)'}",
        f"  SANs:         {sans[0]}",
        *[f"                {more}" for more in sans[1:]],
        f"  Serial:       {leaf.serial_number:x}",
        f"  Not before:   {leaf.not_valid_before_utc.isoformat()}",
        f"  Not after:    {leaf.not_valid_after_utc.isoformat()}",
        f"  Issuer:       {_name(leaf.issuer)}",
        "  Key:          ECC P-256, created in and never leaving the TPM",
        "Chain (SHA-256 fingerprints):",
    ]
    for index, cert in enumerate(chain):
        lines.append(f"  [{index}] {_name(cert.subject) or '(empty subject)'}")
        lines.append(f"      {_fingerprint(cert)}")
    return lines


def cmd_enroll(args: argparse.Namespace) -> int:
    if not args.acme and args.ca:
        args.acme = f"{args.ca.rstrip('/')}/acme/devices/directory"
    if not args.acme:
        return _fail(
            "pass --acme DIRECTORY_URL (or set DEVID_ACME_URL), for example"
            " https://ca.example.com:8443/acme/devices/directory, or --ca URL (or set"
            " DEVID_CA_URL) for the CA's `devices` provisioner"
        )
    if args.root is None:
        return _fail("pass --root FILE (get it with `devid ca root`)")
    try:
        with _open_tpm(args.tcti) as tpm:
            from agent.enroll import enroll
            from agent.tpm import KeyAlgorithm

            enrollment = enroll(
                args.acme,
                args.root,
                tpm,
                args.state,
                ca_url=args.ca,
                contact=args.contact,
                ek_algorithm=args.ek,
                ak_algorithm=KeyAlgorithm(args.ak_type),
            )
    except AgentError as exc:
        return _fail(str(exc))
    print("\n".join(enrollment_lines(enrollment.chain)))
    print()
    print("This command exits now and the certificate is gone with it (by design, it is")
    print("never stored). `devid agent run` enrolls the same way, keeps the certificate in")
    print("memory and uses it.")
    if args.print_pem:
        print()
        print(enrollment.pem(), end="")
    return 0


# --- devid agent swtpm ----------------------------------------------------------------------

#: `devid agent swtpm status` exits with this when no swtpm runs (as LSB init scripts do).
NOT_RUNNING = 3


def _swtpm_record(directory: SwtpmDirectory, running: RunningSwtpm | None) -> dict[str, Any]:
    return {
        "directory": str(directory.directory),
        "running": running is not None,
        "pid": running.pid if running else None,
        "port": running.port if running else None,
        "tcti": running.tcti if running else None,
        "ekType": directory.ek_type(),
        "ekCaBundle": str(directory.bundle) if directory.is_set_up() else None,
    }


def _swtpm_lines(directory: SwtpmDirectory, running: RunningSwtpm) -> list[str]:
    return [
        f"TCTI:          {running.tcti}",
        f"EK:            {directory.ek_type()}",
        f"EK CA bundle:  {directory.bundle}  (root + intermediate that issued the EK certificate)",
    ]


def _next_steps(directory: SwtpmDirectory, running: RunningSwtpm) -> list[str]:
    data = os.environ.get("DEVID_DATA") or "data"
    ca = os.environ.get("DEVID_CA_URL") or "https://127.0.0.1:8443"
    root = os.environ.get("DEVID_ROOT") or "root.crt"
    return [
        "Next:",
        "  # On the CA host: trust this EK CA, then (re)start `devid serve`.",
        f"  mkdir -p {data}/ek-roots && cp {directory.bundle} {data}/ek-roots/swtpm.pem",
        "  # On the device (here): register its EK, then attest.",
        f"  export DEVID_TCTI={running.tcti}",
        "  devid agent info",
        f"  devid device add --data {data} --ek URN --name NAME",
        f"  devid agent attest --ca {ca} --root {root} --state agent-state",
        f"  devid agent swtpm stop --dir {directory.directory}",
    ]


def cmd_swtpm_start(args: argparse.Namespace) -> int:
    directory = SwtpmDirectory(args.dir)
    created = False
    try:
        with directory.locked():
            running = directory.running()
            if running is None:
                set_up_as = directory.ek_type()
                if set_up_as is None:
                    directory.set_up(args.ek or "rsa")
                    created = True
                elif args.ek is not None and args.ek != set_up_as:
                    return _fail(
                        f"{args.dir} was set up with --ek {set_up_as}; its EK cannot change"
                        " (pass another --dir for a new TPM)"
                    )
                running = directory.start(args.port)
                already = False
            else:
                already = True
    except AgentError as exc:
        return _fail(str(exc))
    if args.json:
        record = _swtpm_record(directory, running)
        record.update(alreadyRunning=already, created=created)
        print(json.dumps(record, indent=2))
        return 0
    if already:
        print(f"swtpm is already running on {args.dir} (pid {running.pid})")
        print("\n".join(_swtpm_lines(directory, running)))
        return 0
    if created:
        print(f"Set up a new software TPM in {args.dir} (EK: {directory.ek_type()})")
    print(f"Started swtpm (pid {running.pid}) on {args.dir}")
    print("\n".join(["", *_swtpm_lines(directory, running), "", *_next_steps(directory, running)]))
    return 0


def cmd_swtpm_stop(args: argparse.Namespace) -> int:
    directory = SwtpmDirectory(args.dir)
    try:
        with directory.locked(create=False):
            pid = directory.stop()
    except AgentError as exc:
        return _fail(str(exc))
    if pid is None:
        print(f"swtpm is not running on {args.dir}")
    else:
        print(f"Stopped swtpm (pid {pid}) on {args.dir}")
    return 0


def cmd_swtpm_status(args: argparse.Namespace) -> int:
    directory = SwtpmDirectory(args.dir)
    try:
        running = directory.running()
        record = _swtpm_record(directory, running)
    except AgentError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(record, indent=2))
    elif running is not None:
        print(f"swtpm is running on {args.dir} (pid {running.pid})")
        print("\n".join(_swtpm_lines(directory, running)))
    elif record["ekType"] is None:
        print(f"no software TPM is set up in {args.dir}")
        print(f"  create and start one with: devid agent swtpm start --dir {args.dir}")
    else:
        print(f"swtpm is not running on {args.dir} (EK: {record['ekType']})")
        print(f"  start it with: devid agent swtpm start --dir {args.dir}")
    return 0 if running is not None else NOT_RUNNING
