"""Real attested documents of Azure's metadata service (tests/vectors/cloud/azure/: Azure
public cloud and US Government) through the Azure provisioner's verification: each
chains to a bundled root at its own time, its signer is the metadata service, its
signature verifies, its content and vmId are read; each fails today (its certificates
have expired), when a byte of its content or signature changes, and with other roots.

Their nonces are timestamps an earlier client chose, not this CA's: the provisioner
refuses them for that after everything else has passed.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.errors import Unauthorized
from hosts.testing.keys import StaticRemoteKeys
from plugins.azure.provisioner import (
    bundled_intermediates,
    bundled_roots,
    chain_to_root,
    metadata_service_name,
    verify_attested_document,
)
from plugins.signed_data import read_signed_data
from tests.plugins.test_azure_provisioner import Azure, Device, TestPKI, make, sign
from tests.vectors_path import VECTORS

HERE = VECTORS / "cloud" / "azure"
CASES = {c["name"]: c for c in json.loads((HERE / "cases.json").read_text())["cases"]}
NAMES = sorted(CASES)


def _pem(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((HERE / name).read_bytes())


def _der(case: dict[str, Any]) -> bytes:
    der = (HERE / case["file"]).read_bytes()
    assert der == base64.b64decode(case["signature_base64"])
    return der


def _content(case: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = json.loads(case["expected"]["content"])
    return content


def _made(case: dict[str, Any]) -> datetime:
    """When the document was made (its createdOn)."""
    created = _content(case)["timeStamp"]["createdOn"]
    return datetime.strptime(created, "%m/%d/%y %H:%M:%S %z").astimezone(UTC)


def _verify_at(case: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(case["expected"]["verify_at"].replace("Z", "+00:00"))


def _verify(der: bytes, now: datetime, roots: Any = None) -> Any:
    return verify_attested_document(
        der,
        roots=bundled_roots() if roots is None else roots,
        intermediates=bundled_intermediates(),
        now=now,
    )


def test_the_bundled_certificates_are_the_vectors() -> None:
    bundled = {c.public_bytes(Encoding.DER) for c in (*bundled_roots(), *bundled_intermediates())}
    vectors = {
        _pem(n).public_bytes(Encoding.DER)
        for n in (
            "digicert_global_root_g2.pem",
            "baltimore_cybertrust_root.pem",
            "microsoft_azure_tls_issuing_ca_05.pem",
            "microsoft_rsa_tls_ca_01.pem",
        )
    }
    assert bundled == vectors


@pytest.mark.parametrize("name", NAMES)
def test_a_real_document_verifies_when_it_was_made(name: str) -> None:
    case = CASES[name]
    expected = case["expected"]
    document = _verify(_der(case), _made(case) + timedelta(minutes=1))
    content = _content(case)
    assert document.content.decode() == expected["content"]
    assert document.vm_id == expected["vmId"]
    assert document.subscription_id == content["subscriptionId"]
    assert document.nonce == content["nonce"]
    assert document.created == _made(case)
    assert document.expires == document.created + timedelta(hours=6)
    signer, intermediate, root = document.path
    # cases.json writes the subject in its DER order.
    assert ",".join(a.rfc4514_string() for a in signer.subject) == expected["signer_subject"]
    assert intermediate == _pem(expected["intermediate"])
    assert root == _pem(expected["root"])
    names = signer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == expected["signer_dns_names"]
    assert all(metadata_service_name(n) for n in expected["signer_dns_names"])


@pytest.mark.parametrize("name", NAMES)
def test_a_real_chain_verifies_at_its_pinned_time(name: str) -> None:
    case = CASES[name]
    signed = read_signed_data(_der(case))
    signer = signed.signer_certificate()
    assert signer is not None and signed.certificates == (signer,)
    path = chain_to_root(signer, bundled_intermediates(), bundled_roots(), _verify_at(case))
    assert path[1:] == [_pem(case["expected"]["intermediate"]), _pem(case["expected"]["root"])]
    # The whole document has expired by then: it lives six hours.
    with pytest.raises(Unauthorized, match="expired at"):
        _verify(_der(case), _verify_at(case))


@pytest.mark.parametrize("name", NAMES)
def test_a_real_document_fails_today(name: str) -> None:
    with pytest.raises(Unauthorized, match="signer certificate is not valid now"):
        _verify(_der(CASES[name]), datetime.now(UTC))
    # After its signer expired but before the document was made, it fails as well.
    with pytest.raises(Unauthorized, match="not valid now"):
        _verify(_der(CASES[name]), datetime(2020, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("name", NAMES)
def test_a_changed_content_byte_is_refused(name: str) -> None:
    case = CASES[name]
    der = _der(case)
    content = case["expected"]["content"].encode()
    at = der.index(content) + content.index(b'"vmId":"') + len(b'"vmId":"')
    changed = der[:at] + (b"0" if der[at : at + 1] != b"0" else b"1") + der[at + 1 :]
    with pytest.raises(Unauthorized, match="signature does not verify"):
        _verify(changed, _made(case) + timedelta(minutes=1))


@pytest.mark.parametrize("name", NAMES)
def test_a_changed_signature_byte_is_refused(name: str) -> None:
    case = CASES[name]
    der = _der(case)
    # The SignerInfo's signature is the SignedData's last field.
    changed = der[:-1] + bytes([der[-1] ^ 0x01])
    with pytest.raises(Unauthorized, match="signature does not verify"):
        _verify(changed, _made(case) + timedelta(minutes=1))


@pytest.mark.parametrize("name", NAMES)
def test_other_roots_trust_no_real_document(name: str) -> None:
    case = CASES[name]
    when = _made(case) + timedelta(minutes=1)
    with pytest.raises(Unauthorized, match="does not chain to a trusted root"):
        _verify(_der(case), when, roots=[TestPKI().root])
    # Each root of the two certifies only its own chain.
    own = _pem(case["expected"]["root"])
    other = next(r for r in bundled_roots() if r != own)
    with pytest.raises(Unauthorized, match="does not chain to a trusted root"):
        _verify(_der(case), when, roots=[other])
    assert _verify(_der(case), when, roots=[own]).vm_id == case["expected"]["vmId"]


@pytest.mark.parametrize("name", NAMES)
def test_without_the_intermediate_no_real_document_verifies(name: str) -> None:
    case = CASES[name]
    with pytest.raises(Unauthorized, match="intermediates option"):
        verify_attested_document(
            _der(case),
            roots=bundled_roots(),
            intermediates=(),
            now=_made(case) + timedelta(minutes=1),
        )


@pytest.mark.parametrize("name", NAMES)
def test_the_provisioner_verifies_a_real_document_up_to_its_nonce(
    name: str, tmp_path: Path
) -> None:
    """Everything of a real document passes in the provisioner, with a token of its
    subscription, until the nonce: a timestamp its client chose, not this CA's."""
    case = CASES[name]
    content = _content(case)
    keys = StaticRemoteKeys(discovery=False)
    azure = Azure(keys)
    prov = make(keys, tmp_path, roots=None, intermediates=None)
    when = _made(case) + timedelta(minutes=1)
    subscription = content["subscriptionId"]
    mirid = (
        f"/subscriptions/{subscription}/resourceGroups/rg/providers"
        "/Microsoft.Compute/virtualMachines/vm-1"
    )
    now = int(when.timestamp())
    token = azure.access_token(
        {"xms_mirid": mirid, "iat": now - 60, "nbf": now - 60, "exp": now + 3600}
    )
    device = Device()
    request = azure.request(device, token=token, attested=case["signature_base64"], now=when)
    with pytest.raises(Unauthorized, match=f"nonce '{content['nonce']}' is not"):
        sign(prov, request, device, now=when)
