"""Client commands an operator runs against a CA: ``devid ca ...``."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from agent.caclient import (
    CAClient,
    CAClientError,
    ca_url_from_token,
    decimal_serial,
    describe,
    make_csr,
    token_claims,
    write_chain,
    write_private_key,
)
from engine.keys import KeyType
from hosts.cli.client_options import add_ca_options, add_flow_options, need_url
from plugins.keygen import generate_key

__all__ = ["CAClientError", "register"]


def register(sub: Any) -> None:
    ca = sub.add_parser("ca", help="talk to a running CA (root, certificate, renew, revoke, crl)")
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="COMMAND")

    p = ca_sub.add_parser("root", help="download the root certificate, checked by fingerprint")
    p.add_argument("file", type=Path, help="where to write the root certificate (PEM)")
    p.add_argument("--fingerprint", required=True, help="the root's SHA-256 fingerprint (hex)")
    p.add_argument("--ca-url", default=os.environ.get("DEVID_CA_URL"), required=False)
    p.set_defaults(func=cmd_root)

    p = ca_sub.add_parser(
        "certificate",
        help="make a key and get a certificate with a token, or by signing in (--provisioner)",
        description="With --token, a one-time token from `devid token` authorizes the\n"
        "certificate. With --provisioner NAME, the CA's provisioner NAME does, by its type:\n"
        "- OIDC: devid signs you in with its OpenID provider (as `devid login` does; --token\n"
        "  then takes an ID token obtained elsewhere), and the CA adds your identity's names;\n"
        "- GCP, AWS, Azure: on a cloud instance, devid fetches the instance's identity from\n"
        "  the cloud's metadata server (--metadata-url), and the CA names the instance.",
        epilog="examples:\n  devid ca certificate alice@example.com alice.crt alice.key \\\n"
        "    --provisioner corp --ca-url https://ca.example.com:8443 --root root_ca.crt\n"
        "  devid ca certificate web-1 web-1.crt web-1.key --provisioner gcp \\\n"
        "    --ca-url https://ca.example.com:8443 --root root_ca.crt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("subject", help="the certificate's subject (must match the token)")
    p.add_argument("crt", type=Path, help="where to write the certificate chain (PEM)")
    p.add_argument("key", type=Path, help="where to write the new private key (PEM, mode 0600)")
    p.add_argument(
        "--token",
        default=None,
        help="a one-time token from `devid token` (required without --provisioner), or"
        " with --provisioner an ID token obtained elsewhere",
    )
    p.add_argument(
        "--provisioner",
        default=None,
        metavar="NAME",
        help="get the certificate through the CA's provisioner NAME: sign in (OIDC), or the"
        " instance's identity (GCP, AWS, Azure)",
    )
    p.add_argument(
        "--metadata-url",
        default=None,
        metavar="URL",
        help="the cloud's metadata server, for a cloud provisioner (default, by the"
        " provisioner's type: $DEVID_GCP_METADATA_URL, else http://metadata.google.internal;"
        " $DEVID_AWS_METADATA_URL or $DEVID_AZURE_METADATA_URL, else http://169.254.169.254)",
    )
    p.add_argument(
        "--san",
        action="append",
        default=None,
        help="SANs (default: the token's; with --provisioner, none: the CA adds the"
        " identity's names)",
    )
    p.add_argument("--key-type", default="P-256", choices=[k.value for k in KeyType])
    p.add_argument("--not-after", default=None, help="requested lifetime or time, e.g. 8h")
    add_flow_options(p)
    add_ca_options(p)
    p.set_defaults(func=cmd_certificate, certificate_parser=p)

    p = ca_sub.add_parser("renew", help="renew a certificate over mTLS with the current one")
    p.add_argument("crt", type=Path, help="the current certificate chain; replaced in place")
    p.add_argument("key", type=Path, help="its private key")
    p.add_argument("--out", type=Path, default=None, help="write here instead of replacing CRT")
    add_ca_options(p, url_required=True)
    p.set_defaults(func=cmd_renew)

    p = ca_sub.add_parser(
        "revoke",
        help="revoke a certificate: as an operator (admin token), with a revocation token,"
        " or with the certificate and its key",
        description="With --token, the provisioner that issued the certificate authorizes"
        " the revocation; with --cert and --key, the certificate's own key does. Otherwise"
        " the admin credential does, and any certificate this CA issued (device, account,"
        " AK, server) can be revoked: the admin token is read from --admin-token-file, else"
        " DIR/secrets/admin-token of --data DIR, else $DEVID_ADMIN_TOKEN, else"
        " DIR/secrets/admin-token of $DEVID_DATA.",
    )
    p.add_argument("serial", help="the serial number (decimal, or hex with a 0x prefix)")
    p.add_argument("--token", default=None, help="a revocation token (`devid token --revoke`)")
    p.add_argument("--cert", type=Path, default=None, help="the certificate (mTLS)")
    p.add_argument("--key", type=Path, default=None, help="its private key (mTLS)")
    p.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="file holding the admin API token (DIR/secrets/admin-token on the CA host)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="the CA's data directory, to read DIR/secrets/admin-token",
    )
    p.add_argument("--reason", default="", help="free text stored with the revocation")
    p.add_argument("--reason-code", type=int, default=0, help="RFC 5280 CRLReason code")
    add_ca_options(p)
    p.set_defaults(func=cmd_revoke)

    p = ca_sub.add_parser("crl", help="download a CA's CRL (default the Agent CA's)")
    p.add_argument(
        "file", type=Path, help="where to write the CRL (DER); - prints it as PEM on stdout"
    )
    p.add_argument(
        "--issuer",
        default="agent",
        choices=["agent", "account", "tls", "attestation"],
        help="whose CRL: agent (device certificates, the default), account, tls (ACME"
        " http-01/dns-01/tls-alpn-01, token and admin certificates) or attestation",
    )
    add_ca_options(p, url_required=True)
    p.set_defaults(func=cmd_crl)


def cmd_root(args: argparse.Namespace) -> int:
    with CAClient(need_url(args), None, insecure_root_fetch=True) as client:
        pem = client.root(args.fingerprint)
    args.file.parent.mkdir(parents=True, exist_ok=True)
    args.file.write_text(pem)
    print(f"The root certificate has been saved in {args.file}.")
    return 0


def cmd_certificate(args: argparse.Namespace) -> int:
    if args.provisioner is not None:
        return _certificate_by_provisioner(args)
    if not args.token:
        args.certificate_parser.error("the following arguments are required: --token")
    claims = token_claims(args.token)
    ca_url = args.ca_url or ca_url_from_token(claims)
    sans = args.san if args.san is not None else list(claims.get("sans") or [args.subject])
    key = generate_key(KeyType.parse(args.key_type))
    csr = make_csr(key, args.subject, sans)
    with CAClient(ca_url, args.root) as client:
        response = client.sign(csr, args.token, args.not_after)
    cert = write_chain(args.crt, response)
    write_private_key(args.key, key)
    print(f"Your certificate has been saved in {args.crt}.")
    print(f"Your private key has been saved in {args.key}.")
    print(describe(cert))
    return 0


def _certificate_by_provisioner(args: argparse.Namespace) -> int:
    """``devid ca certificate --provisioner NAME``: CN=SUBJECT with the --san values (the
    CA adds the names the credential gives), authorized by --token, else by what the
    type of the CA's provisioner NAME takes (:func:`_credential_for`)."""
    from hosts.cli.login_commands import print_issued

    key = generate_key(KeyType.parse(args.key_type))
    csr = make_csr(key, args.subject, list(args.san or []))
    with CAClient(need_url(args), args.root) as client:
        token = args.token or _credential_for(args, client, key)
        response = client.sign(csr, token, args.not_after)
    cert = write_chain(args.crt, response)
    write_private_key(args.key, key)
    print_issued(cert, args.crt, args.key)
    return 0


#: The provisioner types ``--provisioner`` gets a credential for by itself.
_SIGN_IN_TYPES = ("OIDC",)


def _credential_for(
    args: argparse.Namespace, client: CAClient, key: CertificateIssuerPrivateKeyTypes
) -> str:
    """The credential the CA's provisioner ``args.provisioner`` takes, by its type in the
    CA's view of it: a cloud instance's identity from the metadata server (GCP, AWS,
    Azure: :func:`agent.cloud.instance_credential`, an AWS or Azure one signed by *key*,
    the key the CSR certifies), or an ID token from signing in (OIDC)."""
    from agent.cloud import CLOUD_TYPES, instance_credential

    name = str(args.provisioner)
    views = client.provisioners()
    view = next((v for v in views if v.get("name") == name), None)
    usable = (*_SIGN_IN_TYPES, *sorted(CLOUD_TYPES))
    if view is None:
        known = sorted(str(v.get("name")) for v in views if v.get("type") in usable)
        present = {v.get("type") for v in views}
        kinds = [k for k in usable if k in _SIGN_IN_TYPES or k in present]
        raise CAClientError(
            f"the CA has no provisioner named {name!r}"
            + (f" (its {_listed(kinds, 'and')} provisioners: {', '.join(known)})" if known else "")
        )
    kind = view.get("type")
    if kind in CLOUD_TYPES:
        return instance_credential(view, client.ca_url, key, args.metadata_url)
    if kind not in _SIGN_IN_TYPES:
        raise CAClientError(
            f"provisioner {name!r} is of type {kind!r}: --provisioner gets a certificate"
            f" through a provisioner of type {_listed(usable, 'or')}; for this one, pass"
            " --token without --provisioner"
        )
    from hosts.cli.login_commands import sign_in

    return sign_in(args, client, name, key)


def _listed(names: Sequence[str], conjunction: str) -> str:
    """``A``, ``A and B``, ``A, B and C`` (or *conjunction*)."""
    if len(names) < 2:
        return "".join(names)
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def cmd_renew(args: argparse.Namespace) -> int:
    with CAClient(need_url(args), args.root, client_cert=(args.crt, args.key)) as client:
        response = client.renew()
    out = args.out or args.crt
    cert = write_chain(out, response)
    print(f"Your certificate has been renewed and saved in {out}.")
    print(describe(cert))
    return 0


def _admin_token(args: argparse.Namespace) -> str | None:
    """The admin token from --admin-token-file, --data DIR, $DEVID_ADMIN_TOKEN, or
    DIR/secrets/admin-token of $DEVID_DATA."""
    path: Path | None = args.admin_token_file
    if path is None and args.data is not None:
        path = Path(args.data) / "secrets" / "admin-token"
    if path is not None:
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise CAClientError(f"cannot read the admin token {path}: {exc.strerror}") from None
        if not token:
            raise CAClientError(f"{path} is empty")
        return token
    from_env = os.environ.get("DEVID_ADMIN_TOKEN", "").strip()
    if from_env:
        return from_env
    data = os.environ.get("DEVID_DATA")
    if data:  # on the CA host, as `devid device ...` finds the data directory
        with contextlib.suppress(OSError):
            return (Path(data) / "secrets" / "admin-token").read_text().strip() or None
    return None


def cmd_revoke(args: argparse.Namespace) -> int:
    client_cert = None
    serial = decimal_serial(args.serial)
    if not args.token and not (args.cert or args.key):
        admin_token = _admin_token(args)
        if admin_token is None:
            raise CAClientError(
                "pass --token, --cert and --key of the certificate to revoke, or the admin"
                " credential (--admin-token-file FILE, --data DIR, $DEVID_ADMIN_TOKEN or"
                " $DEVID_DATA)"
            )
        with CAClient(need_url(args), args.root) as client:
            client.admin_revoke(
                serial, admin_token, reason=args.reason, reason_code=args.reason_code
            )
        print(f"Certificate with serial number {serial} has been revoked.")
        return 0
    if args.token:
        ca_url = args.ca_url or ca_url_from_token(token_claims(args.token))
    else:
        if not (args.cert and args.key):
            raise CAClientError("pass --token, or --cert and --key of the certificate to revoke")
        ca_url = need_url(args)
        client_cert = (args.cert, args.key)
    with CAClient(ca_url, args.root, client_cert=client_cert) as client:
        client.revoke(serial, token=args.token, reason=args.reason, reason_code=args.reason_code)
    print(f"Certificate with serial number {serial} has been revoked.")
    return 0


def cmd_crl(args: argparse.Namespace) -> int:
    with CAClient(need_url(args), args.root) as client:
        der = client.crl(args.issuer)
    crl = x509.load_der_x509_crl(der)
    if str(args.file) == "-":
        print(crl.public_bytes(serialization.Encoding.PEM).decode(), end="")
        return 0
    args.file.write_bytes(der)
    print(
        f"The {args.issuer} CA's CRL has been saved in {args.file} (DER,"
        f" {len(list(crl))} revoked, next update {crl.next_update_utc})."
    )
    return 0
