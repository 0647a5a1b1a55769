"""Account certificates for an enrolled device (``devid agent run``).

With the device certificate (in memory only) and its TPM key, the agent

1. lists its accounts: ``GET {ca}/api/v1/device/accounts`` with
   ``Authorization: Bearer <x5c token>`` signed by the device key (Python's ssl
   cannot use a TPM-resident key for TLS client authentication, so the bearer
   form replaces mTLS: iss ``device-api``, aud the endpoint's URL, 5 minutes, a
   fresh jti);
2. for each account creates a key (in the TPM when the account allows it and
   its key type is P-256, else a software key), a CSR with the rendered names,
   and an X5C token for the account's provisioner, and posts both to the
   account's audience (``/1.0/sign``);
3. delivers ``OUT/<account>.crt`` (the chain, PEM), ``OUT/<account>.key``
   (0600, software keys only) and ``OUT/<account>.p12`` (when asked, software
   keys only).
"""

from __future__ import annotations

import os
import secrets
import ssl
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from plugins.minting import mint_x5c_token

from .caclient import make_csr
from .state import AgentError

DEVICE_API = "/api/v1/device/accounts"
DEVICE_API_ISSUER = "device-api"
TOKEN_LIFETIME = timedelta(minutes=5)
TIMEOUT = httpx.Timeout(30.0)


@attrs.frozen
class AccountSpec:
    """One account as ``GET /api/v1/device/accounts`` describes it for this device."""

    name: str
    provisioner: str
    audience: str
    common_name: str | None
    sans: tuple[str, ...]
    key_type: str
    validity_seconds: int
    tpm_key: bool
    pkcs12: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccountSpec:
        try:
            return cls(
                name=str(data["name"]),
                provisioner=str(data["provisioner"]),
                audience=str(data["audience"]),
                common_name=data.get("commonName"),
                sans=tuple(str(s) for s in data.get("sans") or ()),
                key_type=str(data.get("keyType") or "P-256"),
                validity_seconds=int(data.get("validitySeconds") or 86400),
                tpm_key=bool(data.get("tpmKey", True)),
                pkcs12=bool(data.get("pkcs12", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AgentError(f"the CA listed an account the agent cannot read: {exc}") from None

    @property
    def subject(self) -> str:
        if self.common_name:
            return self.common_name
        if self.sans:
            return self.sans[0]
        raise AgentError(f"the account {self.name!r} has neither a common name nor SANs")

    @property
    def in_tpm(self) -> bool:
        """Whether the key lives in the TPM (devid's TPM keys are ECC P-256)."""
        return self.tpm_key and self.key_type == "P-256"


@attrs.frozen
class Issued:
    """An account certificate the agent delivered."""

    account: str
    chain: list[x509.Certificate]
    files: list[Path]

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]


def _context(root: Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(root))
    except (OSError, ssl.SSLError) as exc:
        raise AgentError(f"cannot read the root {root}: {exc}") from None


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
        if isinstance(data, dict):
            return str(data.get("message") or data.get("detail") or response.text)
    except ValueError:
        pass
    return response.text.strip()[:200]


def _request(
    root: Path, method: str, url: str, *, headers: dict[str, str] | None = None, body: Any = None
) -> dict[str, Any]:
    try:
        with httpx.Client(verify=_context(root), timeout=TIMEOUT) as client:
            response = client.request(method, url, headers=headers, json=body)
    except httpx.HTTPError as exc:
        raise AgentError(f"cannot reach the CA at {url}: {exc}") from None
    if response.status_code >= 400:
        raise AgentError(f"the CA refused {url} ({response.status_code}): {_message(response)}")
    try:
        data = response.json()
    except ValueError:
        raise AgentError(f"the CA answered {url} with something other than JSON") from None
    if not isinstance(data, dict):
        raise AgentError(f"the CA answered {url} with something other than a JSON object")
    return data


def device_subject(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else "device"


def fetch_accounts(
    ca_url: str,
    root: Path,
    key: ec.EllipticCurvePrivateKey,
    chain: Sequence[x509.Certificate],
    now: datetime,
) -> list[AccountSpec]:
    """The device's accounts, proven by an x5c bearer token signed by the device key."""
    url = ca_url.rstrip("/") + DEVICE_API
    token = mint_x5c_token(
        key,
        list(chain),
        provisioner=DEVICE_API_ISSUER,
        subject=device_subject(chain[0]),
        audience=url,
        now=now,
        jti=secrets.token_urlsafe(16),
        lifetime=TOKEN_LIFETIME,
    )
    data = _request(root, "GET", url, headers={"Authorization": f"Bearer {token}"})
    accounts = data.get("accounts")
    if not isinstance(accounts, list):
        raise AgentError("the CA's account listing has no 'accounts' list")
    return [AccountSpec.from_json(a) for a in accounts if isinstance(a, dict)]


def software_key(key_type: str) -> CertificateIssuerPrivateKeyTypes:
    if key_type == "P-256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "P-384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "RSA-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise AgentError(f"the agent cannot create a {key_type} key")


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with *mode* from the start (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    if temporary.exists():
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(temporary, path)


def _chain_of(response: dict[str, Any]) -> list[x509.Certificate]:
    pems = response.get("certChain") or [response.get("crt"), response.get("ca")]
    try:
        return [x509.load_pem_x509_certificate(str(p).encode()) for p in pems if p]
    except ValueError as exc:
        raise AgentError(f"the CA sent a certificate the agent cannot read: {exc}") from None


def issue_account_certificate(
    account: AccountSpec,
    *,
    root: Path,
    device_key: ec.EllipticCurvePrivateKey,
    device_chain: Sequence[x509.Certificate],
    out: Path,
    now: datetime,
    tpm_key: ec.EllipticCurvePrivateKey | None = None,
) -> Issued:
    """Get and deliver one account certificate.

    *tpm_key* is a new TPM-resident key (``TPMSigningKey``) when ``account.in_tpm``;
    otherwise a software key of the account's type is created and written 0600.
    """
    key: CertificateIssuerPrivateKeyTypes
    if account.in_tpm:
        if tpm_key is None:
            raise AgentError(f"the account {account.name!r} needs a TPM key")
        key = tpm_key
    else:
        key = software_key(account.key_type)
    subject = account.subject
    sans = list(account.sans) or [subject]
    csr = make_csr(key, subject, sans)
    token = mint_x5c_token(
        device_key,
        list(device_chain),
        provisioner=account.provisioner,
        subject=subject,
        audience=account.audience,
        now=now,
        jti=secrets.token_urlsafe(16),
        sans=sans,
        lifetime=TOKEN_LIFETIME,
    )
    body = {"csr": csr.public_bytes(serialization.Encoding.PEM).decode(), "ott": token}
    chain = _chain_of(_request(root, "POST", account.audience, body=body))
    if not chain or chain[0].public_key() != key.public_key():
        raise AgentError(f"the CA's certificate for {account.name!r} does not certify our key")
    files: list[Path] = []
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    if not account.in_tpm:
        key_path = out / f"{account.name}.key"
        _write(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            0o600,
        )
        files.append(key_path)
        if account.pkcs12:
            p12_path = out / f"{account.name}.p12"
            data = pkcs12.serialize_key_and_certificates(
                account.name.encode(),
                key,  # type: ignore[arg-type]
                chain[0],
                chain[1:] or None,
                serialization.NoEncryption(),
            )
            _write(p12_path, data, 0o600)
            files.append(p12_path)
    crt_path = out / f"{account.name}.crt"
    _write(crt_path, pem, 0o644)
    files.insert(0, crt_path)
    return Issued(account.name, chain, files)


def remove_delivered(files: Sequence[Path]) -> list[Path]:
    """Remove the files delivered for an account the device no longer has (its
    certificate, key, PKCS#12); returns those that were there."""
    removed: list[Path] = []
    for path in files:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise AgentError(f"cannot remove {path}: {exc}") from None
        removed.append(path)
    return removed
