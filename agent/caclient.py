"""A small synchronous client for the CA's HTTPS API (``devid ca ...``)."""

from __future__ import annotations

import hashlib
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from engine.errors import DevidError
from engine.jose import parse_compact
from engine.keys import signature_hash_for
from engine.names import SAN

TIMEOUT = httpx.Timeout(30.0)


class CAClientError(DevidError):
    """The CA refused a request or could not be reached; the message says why."""


def make_csr(
    key: CertificateIssuerPrivateKeyTypes, subject: str | None, sans: list[str]
) -> x509.CertificateSigningRequest:
    """A CSR for *key* with CN=*subject* (None: an empty subject, for a CA that fills in
    the names itself, as an OIDC provisioner does from the identity) and *sans*."""
    attributes = [] if subject is None else [x509.NameAttribute(NameOID.COMMON_NAME, subject)]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    names = [SAN.parse(s).to_general_name() for s in sans]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, signature_hash_for(key))  # type: ignore[arg-type]


def decimal_serial(text: str) -> str:
    """A serial as the API wants it (decimal), from decimal or 0x-prefixed hex input."""
    value = text.strip()
    try:
        number = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
    except ValueError:
        raise CAClientError(f"serial {text!r} is not a decimal or 0x-hex number") from None
    return str(number)


def token_claims(token: str) -> dict[str, Any]:
    """The token's claims, unverified: the client only reads sub, sans and aud."""
    try:
        return parse_compact(token).claims()
    except Exception as exc:
        raise CAClientError(f"the token cannot be read: {exc}") from None


def ca_url_from_token(claims: dict[str, Any]) -> str:
    aud = claims.get("aud")
    aud = aud[0] if isinstance(aud, list) and aud else aud
    if not isinstance(aud, str) or "/1.0/" not in aud:
        raise CAClientError("the token has no CA audience; pass --ca-url")
    return aud.split("/1.0/")[0]


def write_private_key(path: Path, key: CertificateIssuerPrivateKeyTypes) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


class CAClient:
    def __init__(
        self,
        ca_url: str,
        root: Path | None,
        *,
        client_cert: tuple[Path, Path] | None = None,
        insecure_root_fetch: bool = False,
    ) -> None:
        self.ca_url = ca_url.rstrip("/")
        if root is not None:
            context = ssl.create_default_context(cafile=str(root))
        elif insecure_root_fetch:
            # Only for fetching the root, which is then checked against its fingerprint.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            raise CAClientError("pass --root FILE (get it with `devid ca root`)")
        if client_cert is not None:
            try:
                context.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
            except (OSError, ssl.SSLError) as exc:
                raise CAClientError(f"cannot load the client certificate: {exc}") from None
        self._client = httpx.Client(verify=context, timeout=TIMEOUT, http2=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CAClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = self._client.request(method, self.ca_url + path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise CAClientError(f"cannot reach the CA at {self.ca_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except (ValueError, AttributeError):
                message = response.text
            raise CAClientError(f"the CA refused ({response.status_code}): {message}")
        return response

    def root(self, fingerprint: str) -> str:
        pem = self._request("GET", f"/root/{fingerprint}").json()["ca"]
        cert = x509.load_pem_x509_certificate(pem.encode())
        actual = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        if actual != fingerprint.lower().replace(":", ""):
            raise CAClientError("the root the CA sent does not have the expected fingerprint")
        return str(pem)

    def provisioners(self) -> list[dict[str, Any]]:
        """The public view of every provisioner of the CA (``GET /provisioners``)."""
        body = self._request("GET", "/provisioners").json()
        views = body.get("provisioners") if isinstance(body, dict) else None
        if not isinstance(views, list) or not all(isinstance(v, dict) for v in views):
            raise CAClientError("the CA's list of provisioners is not a list of objects")
        return [dict(view) for view in views]

    def sign(
        self, csr: x509.CertificateSigningRequest, token: str, not_after: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
            "ott": token,
        }
        if not_after:
            body["notAfter"] = not_after
        return dict(self._request("POST", "/1.0/sign", body).json())

    def renew(self) -> dict[str, Any]:
        return dict(self._request("POST", "/1.0/renew", {}).json())

    def revoke(self, serial: str, *, token: str | None, reason: str, reason_code: int) -> None:
        body: dict[str, Any] = {"serial": serial, "reason": reason, "reasonCode": reason_code}
        if token:
            body["ott"] = token
        self._request("POST", "/1.0/revoke", body)

    def admin_revoke(self, serial: str, admin_token: str, *, reason: str, reason_code: int) -> None:
        """Revoke any certificate of this CA with the admin credential (the admin API)."""
        body: dict[str, Any] = {"reason": reason, "reasonCode": reason_code}
        headers = {"Authorization": f"Bearer {admin_token}"}
        self._request("POST", f"/api/v1/certificates/{serial}/revoke", body, headers)

    def crl(self, issuer: str = "agent") -> bytes:
        """The CRL of one intermediate (attestation, agent, account or tls)."""
        return self._request("GET", f"/crl/{issuer}").content


def write_chain(path: Path, response: dict[str, Any]) -> x509.Certificate:
    chain = response.get("certChain") or [response["crt"], response["ca"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(chain))
    return x509.load_pem_x509_certificate(chain[0].encode())


def describe(cert: x509.Certificate) -> str:
    return json.dumps(
        {
            "serial": str(cert.serial_number),
            "subject": cert.subject.rfc4514_string(),
            "notBefore": cert.not_valid_before_utc.isoformat(),
            "notAfter": cert.not_valid_after_utc.isoformat(),
            "fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
        },
        indent=2,
    )
