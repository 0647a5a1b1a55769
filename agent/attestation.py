"""The device side of AK enrollment with the Attestation CA.

The exchange is Smallstep's (so either side can talk to the other's peer):

1. ``POST {ca}/attest`` with the TPM's identity, the EK (PKIX key and its
   certificate) and the new AK's public area with its creation evidence. The
   CA checks the device is registered and the AK is a TPM-bound restricted key,
   and answers with a credential encrypted to the EK for the AK's Name.
2. TPM2_ActivateCredential releases the credential only if the EK and an
   object with that Name live in this TPM.
3. ``POST {ca}/secret`` with the released credential; the CA answers with the
   AK certificate chain.

Binary fields are standard base64; TPM structures are raw TPM marshalling
without outer sizes, except ``credential`` and ``secret`` in the answer to
``/attest``, which keep their TPM2B sizes. The wire protocol carries no session
id: the CA finds the session from the answer itself.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import ssl
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engine.tpm import public_key_from_tpmt

from .state import AgentError, AgentState, EKRecord
from .tpm import (
    TPM,
    AKParameters,
    AttestationKey,
    EndorsementKey,
    KeyAlgorithm,
    TPMInfo,
    public_of,
)

__all__ = ["AgentError", "ak_certificate_revoked", "attest", "attest_request"]

TIMEOUT = httpx.Timeout(30.0)
MAX_MESSAGE = 300


def attest_request(info: TPMInfo, ek: EndorsementKey, params: AKParameters) -> dict[str, Any]:
    """The ``POST /attest`` body for this TPM, EK and AK."""
    certs = [ek.certificate.der] if ek.certificate is not None else []
    return {
        "tpmInfo": info.to_json(),
        "ek": base64.b64encode(ek.spki_der).decode("ascii"),
        "ekCerts": [base64.b64encode(der).decode("ascii") for der in certs],
        "params": params.to_json(),
    }


def _load_roots(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AgentError(f"cannot read the root certificate {path}: {exc.strerror}") from None
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise AgentError(f"{path} holds no PEM certificate") from None


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "detail", "error"):
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])[:MAX_MESSAGE]
    text = response.text.strip().replace("\n", " ")
    return text[:MAX_MESSAGE] or response.reason_phrase


def _post(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        response = client.post(url, json=body)
    except httpx.HTTPError as exc:
        raise AgentError(f"cannot reach the Attestation CA at {url}: {exc}") from None
    if response.status_code >= 400:
        raise AgentError(
            f"the Attestation CA refused ({response.status_code}): {_message(response)}"
        )
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AgentError(f"the Attestation CA sent a response that is not a JSON object ({url})")
    return data


def _b64_field(data: dict[str, Any], field: str) -> bytes:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise AgentError(f"the Attestation CA's response has no {field}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AgentError(f"the Attestation CA's {field} is not base64") from None


def _parse_chain(data: dict[str, Any]) -> list[x509.Certificate]:
    raw = data.get("chain")
    if not isinstance(raw, list) or not raw:
        raise AgentError("the Attestation CA's response has no certificate chain")
    chain: list[x509.Certificate] = []
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            raise AgentError(f"chain[{index}] from the Attestation CA is not base64")
        try:
            chain.append(x509.load_der_x509_certificate(base64.b64decode(item, validate=True)))
        except (binascii.Error, ValueError):
            raise AgentError(
                f"chain[{index}] from the Attestation CA is not a certificate"
            ) from None
    return chain


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except Exception:
        return False
    return True


def check_chain(
    chain: list[x509.Certificate], ak_spki: bytes, roots: list[x509.Certificate]
) -> None:
    """The chain must certify our AK and lead, link by link, to one of *roots*."""
    leaf_spki = chain[0].public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if leaf_spki != ak_spki:
        raise AgentError("the Attestation CA certified a different key than this AK")
    for child, parent in itertools.pairwise(chain):
        if not _issued_by(child, parent):
            raise AgentError("the AK certificate chain from the Attestation CA is broken")
    last = chain[-1]
    if not any(_issued_by(last, root) or last == root for root in roots):
        raise AgentError("the AK certificate chain does not lead to the trusted root")


def _client(root_pem_path: Path | str) -> httpx.Client:
    """An HTTPS client that trusts only the root in *root_pem_path*."""
    try:
        context = ssl.create_default_context(cafile=str(root_pem_path))
    except (OSError, ssl.SSLError) as exc:
        raise AgentError(f"cannot use {root_pem_path} as a TLS root: {exc}") from None
    return httpx.Client(verify=context, timeout=TIMEOUT)


def _attest_over(
    client: httpx.Client,
    base: str,
    tpm: TPM,
    ak_algorithm: KeyAlgorithm,
    ek_algorithm: Literal["rsa", "ecc"] | None,
) -> tuple[list[x509.Certificate], AttestationKey, EndorsementKey]:
    """The two requests of an enrolment, with a new AK, over *client*."""
    info = tpm.info()
    ek = tpm.endorsement_key(algorithm=ek_algorithm)
    ak = tpm.create_ak(ak_algorithm)
    challenge = _post(client, f"{base}/attest", attest_request(info, ek, ak.parameters))
    credential = _b64_field(challenge, "credential")
    encrypted_secret = _b64_field(challenge, "secret")
    secret = tpm.activate_credential(ak.key, ek, credential, encrypted_secret)
    answer = {"secret": base64.b64encode(secret).decode("ascii")}
    return _parse_chain(_post(client, f"{base}/secret", answer)), ak, ek


def attest(
    ca_url: str,
    root_pem_path: Path | str,
    tpm: TPM,
    state_dir: Path | str,
    *,
    ak_algorithm: KeyAlgorithm = KeyAlgorithm.ECC_P256,
    ek_algorithm: Literal["rsa", "ecc"] | None = None,
    client: httpx.Client | None = None,
) -> list[x509.Certificate]:
    """Create an AK, have the Attestation CA certify it, and keep it in *state_dir*.

    The HTTPS connection trusts only the root in *root_pem_path*, and so does
    the returned chain [AK certificate, Attestation CA certificate]. Both requests
    go over one connection: *client*'s if given (one that trusts the same root, such
    as the enrolment's ACME client), else one opened for them. Raises AgentError with
    the CA's own message when it refuses.
    """
    roots = _load_roots(Path(root_pem_path))
    state = AgentState(state_dir).ensure()
    with ExitStack() as stack:
        if client is None:
            client = stack.enter_context(_client(root_pem_path))
        chain, ak, ek = _attest_over(client, ca_url.rstrip("/"), tpm, ak_algorithm, ek_algorithm)

    # The key the certificate must carry, from the blob we keep (not from the request).
    ak_spki = public_key_from_tpmt(public_of(ak.key)).public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    check_chain(chain, ak_spki, roots)
    state.save_ak(ak.key)
    state.save_ek(
        EKRecord(
            ek.urn,
            ek.template.value,
            ek.certificate.nv_index if ek.certificate is not None else None,
        )
    )
    state.save_chain(chain)
    return chain


def ak_certificate_revoked(
    ca_url: str,
    root_pem_path: Path | str,
    chain: list[x509.Certificate],
    *,
    client: httpx.Client | None = None,
) -> bool:
    """Whether the Attestation CA's CRL lists the AK certificate *chain[0]*.

    A CA revokes a device's AK certificate when the device is disabled or removed;
    a device enabled again must attest again before it can enrol. The CRL must be
    signed by the chain's issuer (*chain[1]*). It is fetched through *client* if given
    (one that trusts the same root: the enrolment's own connection), else over a
    connection of its own. Raises AgentError when the CRL cannot be fetched or checked:
    the caller then goes on, and the CA decides.
    """
    if len(chain) < 2:
        return False
    url = f"{ca_url.rstrip('/')}/crl/attestation"
    try:
        with ExitStack() as stack:
            if client is None:
                client = stack.enter_context(_client(root_pem_path))
            response = client.get(url)
    except httpx.HTTPError as exc:
        raise AgentError(f"cannot fetch {url}: {exc}") from None
    if response.status_code != 200:
        raise AgentError(f"{url} answered {response.status_code}")
    try:
        crl = x509.load_der_x509_crl(response.content)
    except ValueError:
        raise AgentError(f"{url} did not return a DER CRL") from None
    if crl.issuer != chain[1].subject or not crl.is_signature_valid(chain[1].public_key()):  # type: ignore[arg-type]
        raise AgentError(f"the CRL at {url} is not signed by the Attestation CA")
    return crl.get_revoked_certificate_by_serial_number(chain[0].serial_number) is not None
