"""Device-side commands: ``devid agent info`` and ``devid agent attest``.

The TPM library (tpm2-pytss, the ``agent`` extra) is imported only when one of
these commands runs, so the rest of the CLI works where it is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.state import AgentError, AgentState

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
    p.add_argument(
        "--ca",
        default=os.environ.get("DEVID_CA_URL"),
        metavar="URL",
        help="the CA's URL, e.g. https://ca.example.com:8443 (default $DEVID_CA_URL)",
    )
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
    p.add_argument(
        "--ak-type", choices=["ecc", "rsa"], default="ecc", help="AK key type (default ecc)"
    )
    p.set_defaults(func=cmd_attest)


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
    return 0
