"""``devid login``: a person signs in through single sign-on and gets a certificate.

The CA's OIDC provisioner certifies a key for the identity an ID token of its OpenID
provider names. ``devid login`` makes the key, signs in (the browser flow with PKCE on
a loopback redirect, or the device flow; :mod:`agent.oidc`) asking for an ID token
bound to that key (its nonce is :func:`plugins.minting.key_nonce` of the public key),
and sends a CSR with no names to the CA with the ID token: the CA puts in the names the
identity gives. ``devid ca certificate --provisioner NAME`` signs in the same way
(:func:`sign_in`) for a CSR with the names it is given.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import webbrowser
from pathlib import Path
from typing import Any

import platformdirs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from agent.caclient import (
    CAClient,
    CAClientError,
    describe,
    make_csr,
    write_chain,
    write_private_key,
)
from agent.oidc import DevicePrompt, LoginSettings, browser_login, device_login, discover
from engine.keys import KeyType
from hosts.cli.client_options import add_ca_options, add_flow_options, need_url
from plugins.keygen import generate_key
from plugins.minting import key_nonce

__all__ = ["certificate_names", "print_issued", "register", "sign_in"]

HELP = "sign in through single sign-on (OpenID Connect) and get a certificate for yourself"

DESCRIPTION = """\
Sign in with your organisation's OpenID provider (Google, Entra ID, Okta, Keycloak...)
through the CA's OIDC provisioner NAME, and get a certificate for yourself: its names
(your email address, your identity at the provider) come from the sign-in.

devid makes a new key, opens the browser at the provider's sign-in page (the URL is
printed too, to open by hand where there is no browser), and receives the answer on
http://127.0.0.1:PORT/callback. The ID token it gets is bound to the new key, so it
cannot certify another. With --device, you sign in on any other device instead: open
the URL printed and enter the code (where the provider offers it). With --token, an
ID token obtained elsewhere is used as is.

The certificate chain is written to DIR/NAME.crt and the key to DIR/NAME.key (mode
0600)."""

EPILOG = """\
example:
  devid login --provisioner corp --ca-url https://ca.example.com:8443 --root root_ca.crt
  devid login --provisioner corp --device        # with DEVID_CA_URL and DEVID_ROOT set
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "login",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--provisioner", required=True, metavar="NAME", help="the CA's OIDC provisioner")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to write NAME.crt and NAME.key (default: the per-user data directory's"
        f" login folder, {default_out()})",
    )
    p.add_argument("--key-type", default="P-256", choices=[k.value for k in KeyType])
    p.add_argument(
        "--token",
        default=None,
        help="an ID token obtained elsewhere (with no nonce, or the new key's), instead of"
        " signing in",
    )
    add_flow_options(p)
    add_ca_options(p, url_required=True)
    p.set_defaults(func=cmd_login)


def default_out() -> Path:
    return Path(platformdirs.user_data_dir("devid")) / "login"


def spki_der(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _provisioner_view(client: CAClient, name: str) -> dict[str, Any]:
    views = client.provisioners()
    for view in views:
        if view.get("name") == name:
            return view
    known = ", ".join(sorted(str(v.get("name")) for v in views if v.get("type") == "OIDC"))
    raise CAClientError(
        f"the CA has no provisioner named {name!r}"
        + (f" (its OIDC provisioners: {known})" if known else " (and no OIDC provisioner)")
    )


def _show_url(url: str, *, open_browser: bool) -> None:
    print(f"Open this URL to sign in:\n  {url}", flush=True)
    if open_browser:
        with contextlib.suppress(webbrowser.Error):  # the URL is printed: open it by hand
            webbrowser.open(url)


def _show_prompt(prompt: DevicePrompt) -> None:
    print(prompt.text(), flush=True)


def sign_in(
    args: argparse.Namespace,
    client: CAClient,
    provisioner: str,
    key: CertificateIssuerPrivateKeyTypes,
) -> str:
    """An ID token for *key* through *provisioner* of the CA, by the flow *args* choose
    (``--device``, ``--no-browser``, ``--timeout``)."""
    settings = LoginSettings.from_view(_provisioner_view(client, provisioner))
    endpoints = discover(settings.provider)
    if args.device:
        return device_login(settings, endpoints, show_prompt=_show_prompt, timeout=args.timeout)
    open_browser = not args.no_browser
    return browser_login(
        settings,
        endpoints,
        nonce=key_nonce(spki_der(key)),
        show_url=lambda url: _show_url(url, open_browser=open_browser),
        timeout=args.timeout,
    )


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The certificate's subject alternative names, as ``devid`` writes them."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = []
    for name in sans:
        if isinstance(name, x509.RFC822Name):
            names.append(f"email:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            names.append(f"uri:{name.value}")
        elif isinstance(name, x509.DNSName):
            names.append(f"dns:{name.value}")
        elif isinstance(name, x509.IPAddress):
            names.append(f"ip:{name.value}")
        else:
            names.append(str(name.value))
    return names


def print_issued(cert: x509.Certificate, crt: Path, key: Path) -> None:
    print(f"Your certificate has been saved in {crt}.")
    print(f"Your private key has been saved in {key}.")
    names = certificate_names(cert)
    print(f"Its names: {', '.join(names) if names else '(none)'}")
    print(f"It expires at {cert.not_valid_after_utc.isoformat()}.")
    print(describe(cert))


def cmd_login(args: argparse.Namespace) -> int:
    ca_url = need_url(args)
    name = str(args.provisioner)
    if not name or Path(name).name != name or name.startswith("."):
        raise CAClientError(f"--provisioner {name!r} cannot name the files NAME.crt, NAME.key")
    out: Path = args.out if args.out is not None else default_out()
    crt, key_path = out / f"{name}.crt", out / f"{name}.key"
    key = generate_key(KeyType.parse(args.key_type))
    with CAClient(ca_url, args.root) as client:
        if args.token:
            token = args.token
        else:
            token = sign_in(args, client, name, key)
            print("Signed in; asking the CA for a certificate.", file=sys.stderr, flush=True)
        response = client.sign(make_csr(key, None, []), token)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert = write_chain(crt, response)
    write_private_key(key_path, key)
    print_issued(cert, crt, key_path)
    return 0
