"""agent.tpm against a real swtpm, cross-checked with the server's pure-Python engine.tpm.

The decisive check is ``test_engine_make_credential_is_released_by_the_tpm``: what
the Attestation CA computes in software, the real TPM must accept, for RSA and
ECC EKs alike.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from tpm2_pytss import ESAPI
from tpm2_pytss.types import TPM2B_PUBLIC

from agent.state import AgentState, EKRecord
from agent.tpm import (
    EK_CERTIFICATE_INDICES,
    TPM,
    KeyAlgorithm,
    TPMAccessError,
    public_of,
)
from engine.chain import verify_chain
from engine.inventory import ek_urn, ek_urn_from_certificate
from engine.tpm import (
    CertifyInfo,
    EKTemplate,
    ObjectAttributes,
    check_ak_public,
    ek_public_from_key,
    make_credential,
    verify_ak_creation,
    verify_attestation,
    verify_signature,
)

if TYPE_CHECKING:
    from tests.swtpm import LocalCA, Swtpm

pytest_plugins = ["tests.swtpm"]

EXPECTED_TEMPLATE = {"rsa": EKTemplate.RSA_2048, "ecc": EKTemplate.ECC_NIST_P384}
AK_ALGORITHMS = [KeyAlgorithm.ECC_P256, KeyAlgorithm.RSA_2048]


class OSRandom:
    def bytes(self, n: int) -> bytes:
        return os.urandom(n)


def credential_for(tpm: TPM, name: bytes) -> tuple[bytes, bytes, bytes]:
    """(secret, credential blob, encrypted seed) as the Attestation CA makes them."""
    ek = tpm.endorsement_key()
    secret = os.urandom(32)
    result = make_credential(ek.public, name, secret, OSRandom())
    return secret, result.credential_blob, result.secret


# --- identity -------------------------------------------------------------------------


def test_info_reports_manufacturer_vendor_and_firmware(swtpm_rsa: Swtpm) -> None:
    with TPM(swtpm_rsa.tcti) as tpm:
        info = tpm.info()
    assert info.manufacturer_ascii == "IBM"
    assert info.vendor.startswith("SW") and info.vendor.endswith("TPM")
    assert info.to_json() == {
        "version": 2,
        "manufacturer": str(0x49424D00),
        "model": info.vendor,
        "firmwareVersion": f"{info.firmware_major}.{info.firmware_minor}",
    }


def test_ek_certificate_is_read_from_its_tcg_index_and_chains_to_the_local_ca(
    swtpm: Swtpm, swtpm_ek_ca: LocalCA
) -> None:
    with TPM(swtpm.tcti) as tpm:
        certs = tpm.ek_certificates()
    assert [c.nv_index for c in certs] == [EK_CERTIFICATE_INDICES[EXPECTED_TEMPLATE[swtpm.ek_type]]]
    cert = certs[0].certificate
    assert cert is not None and certs[0].der == cert.public_bytes(Encoding.DER)
    root = x509.load_pem_x509_certificate(swtpm_ek_ca.root.read_bytes())
    intermediate = x509.load_pem_x509_certificate(swtpm_ek_ca.intermediate.read_bytes())
    path = verify_chain(cert, [intermediate], [root], datetime.now(UTC), what="EK certificate")
    assert path[-1] == root


def test_ek_urn_is_the_inventory_urn_of_the_ek_certificate_key(swtpm: Swtpm) -> None:
    with TPM(swtpm.tcti) as tpm:
        ek = tpm.endorsement_key()
    assert ek.certificate is not None and ek.certificate.certificate is not None
    assert ek.urn == ek_urn_from_certificate(ek.certificate.certificate)
    assert ek.urn == ek_urn(ek.certificate.certificate.public_key())


def test_ek_from_the_default_template_matches_the_ek_certificate(swtpm: Swtpm) -> None:
    with TPM(swtpm.tcti) as tpm:
        ek = tpm.endorsement_key()
    assert ek.template is EXPECTED_TEMPLATE[swtpm.ek_type]
    assert ek.certificate is not None
    cert_key = ek.certificate.certificate.public_key()  # type: ignore[union-attr]
    assert isinstance(cert_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    # What the server assumes from the bare key is exactly what the TPM derived.
    assert ek_public_from_key(cert_key) == ek.public
    assert ek_public_from_key(cert_key).to_bytes() == ek.public.to_bytes()


def test_a_tpm_with_both_ek_certificates_prefers_rsa_and_gives_ecc_on_request(
    swtpm_both: Swtpm,
) -> None:
    with TPM(swtpm_both.tcti) as tpm:
        assert tpm.endorsement_key().template is EKTemplate.RSA_2048
        ecc = tpm.endorsement_key(algorithm="ecc")
    assert ecc.template is EKTemplate.ECC_NIST_P384
    assert ecc.certificate is not None and ecc.certificate.nv_index == 0x01C00016


def test_without_ek_certificate_the_ek_is_rsa_2048_from_template_l1(
    swtpm_no_ek_cert: Swtpm,
) -> None:
    with TPM(swtpm_no_ek_cert.tcti) as tpm:
        assert tpm.ek_certificates() == []
        ek = tpm.endorsement_key()
        ecc = tpm.endorsement_key(algorithm="ecc")
    assert (ek.template, ek.certificate) == (EKTemplate.RSA_2048, None)
    assert ek.public == ek_public_from_key(ek.public_key)
    assert ecc.template is EKTemplate.ECC_NIST_P256


# --- the attestation key ------------------------------------------------------------


@pytest.mark.parametrize("algorithm", AK_ALGORITHMS, ids=lambda a: a.value)
def test_ak_creation_evidence_passes_the_servers_checks(
    swtpm_rsa: Swtpm, algorithm: KeyAlgorithm
) -> None:
    with TPM(swtpm_rsa.tcti) as tpm:
        ak = tpm.create_ak(algorithm)
    p = ak.parameters
    checked = verify_ak_creation(p.public, p.create_data, p.create_attestation, p.create_signature)
    assert checked.name == ak.name
    check_ak_public(ak.public)
    attributes = ak.public.object_attributes
    assert attributes & ObjectAttributes.RESTRICTED and attributes & ObjectAttributes.SIGN
    assert not attributes & ObjectAttributes.DECRYPT


@pytest.mark.parametrize("algorithm", AK_ALGORITHMS, ids=lambda a: a.value)
def test_ak_name_from_engine_equals_the_names_the_tpm_and_tpm2_pytss_report(
    swtpm_rsa: Swtpm, algorithm: KeyAlgorithm
) -> None:
    with TPM(swtpm_rsa.tcti) as tpm:
        ak = tpm.create_ak(algorithm)
        reported_by_tpm = tpm.name_of(ak.key)
    pytss_public, _ = TPM2B_PUBLIC.unmarshal(ak.key.public)
    assert public_of(ak.key).name() == ak.name == reported_by_tpm
    assert bytes(pytss_public.get_name().marshal())[2:] == ak.name
    assert public_of(ak.key).to_tpm2b() == ak.key.public  # round trip, byte for byte


# --- credential activation ------------------------------------------------------------


@pytest.mark.parametrize("algorithm", AK_ALGORITHMS, ids=lambda a: a.value)
def test_engine_make_credential_is_released_by_the_tpm(
    swtpm: Swtpm, algorithm: KeyAlgorithm
) -> None:
    with TPM(swtpm.tcti) as tpm:
        ak = tpm.create_ak(algorithm)
        ek = tpm.endorsement_key()
        secret, blob, seed = credential_for(tpm, ak.name)
        assert tpm.activate_credential(ak.key, ek, blob, seed) == secret
        assert tpm.loaded_objects() == 0


# libtpms 0.9 cannot create RSA-4096 keys, so the H-7 template is exercised only in
# engine tests (tests/engine/tpm) against software keys.
TEMPLATES_SWTPM_CAN_MAKE = [t for t in EKTemplate if t is not EKTemplate.RSA_4096]


@pytest.mark.parametrize("template", TEMPLATES_SWTPM_CAN_MAKE, ids=lambda t: t.value)
def test_make_credential_to_each_tcg_ek_template_is_released(
    swtpm_no_ek_cert: Swtpm, template: EKTemplate
) -> None:
    """Beyond swtpm's own EKs: every template the server may assume from a bare key."""
    with TPM(swtpm_no_ek_cert.tcti) as tpm:
        ak = tpm.create_ak()
        ek = tpm.endorsement_key(template)
        assert ek.public == ek_public_from_key(ek.public_key, template)
        secret = os.urandom(32)
        result = make_credential(ek.public, ak.name, secret, OSRandom())
        assert tpm.activate_credential(ak.key, ek, result.credential_blob, result.secret) == secret


def test_a_credential_made_for_another_name_is_refused(swtpm: Swtpm) -> None:
    with TPM(swtpm.tcti) as tpm:
        ak = tpm.create_ak()
        other = tpm.create_ak()
        ek = tpm.endorsement_key()
        _, blob, seed = credential_for(tpm, other.name)
        with pytest.raises(TPMAccessError, match="not made for this AK and EK"):
            tpm.activate_credential(ak.key, ek, blob, seed)
        assert tpm.loaded_objects() == 0


def test_a_credential_made_to_another_ek_is_refused(swtpm_rsa: Swtpm) -> None:
    stranger = ek_public_from_key(rsa.generate_private_key(65537, 2048).public_key())
    with TPM(swtpm_rsa.tcti) as tpm:
        ak = tpm.create_ak()
        ek = tpm.endorsement_key()
        result = make_credential(stranger, ak.name, os.urandom(32), OSRandom())
        with pytest.raises(TPMAccessError, match=r"refused the credential|made for another EK"):
            tpm.activate_credential(ak.key, ek, result.credential_blob, result.secret)


def test_an_ak_reloaded_from_the_state_directory_activates_after_a_power_cycle(
    swtpm: Swtpm, tmp_path: Path
) -> None:
    state = AgentState(tmp_path / "state")
    with TPM(swtpm.tcti) as tpm:
        ak = tpm.create_ak()
        ek = tpm.endorsement_key()
        state.save_ak(ak.key)
        state.save_ek(EKRecord(ek.urn, ek.template.value, None))
    swtpm.restart()  # new process: nothing loaded survives, the SRK is derived again

    stored, record = state.load_ak(), state.load_ek()
    assert stored is not None and record is not None
    with TPM(swtpm.tcti) as tpm:
        ek_again = tpm.endorsement_key(EKTemplate(record.template))
        assert ek_again.urn == record.urn
        secret, blob, seed = credential_for(tpm, public_of(stored).name())
        assert tpm.activate_credential(stored, ek_again, blob, seed) == secret


# --- other TPM-resident keys ------------------------------------------------------------


@pytest.mark.parametrize("algorithm", AK_ALGORITHMS, ids=lambda a: a.value)
def test_a_tpm_key_is_certified_by_the_ak_and_signs_digests(
    swtpm_rsa: Swtpm, algorithm: KeyAlgorithm
) -> None:
    qualifying = hashlib.sha256(b"key authorization").digest()
    with TPM(swtpm_rsa.tcti) as tpm:
        ak = tpm.create_ak()
        key = tpm.create_key(algorithm)
        certification = tpm.certify(key, ak.key, qualifying)
        signature = tpm.sign(key, hashlib.sha256(b"to be signed").digest())
    public = public_of(key)
    assert not public.object_attributes & ObjectAttributes.RESTRICTED
    attest = verify_attestation(ak.public, certification.attestation, certification.signature)
    assert isinstance(attest.attested, CertifyInfo)
    assert attest.attested.name == public.name()
    assert attest.extra_data == qualifying
    verify_signature(public, signature, b"to be signed")


# --- housekeeping ------------------------------------------------------------------------


def test_objects_a_crashed_process_left_loaded_are_flushed_on_open(swtpm_rsa: Swtpm) -> None:
    crashed = ESAPI(swtpm_rsa.tcti)
    for _ in range(3):  # every transient slot swtpm has
        crashed.create_primary(None, "ecc256")
    crashed.close()  # without flushing, like a killed process
    with TPM(swtpm_rsa.tcti) as tpm:
        assert tpm.loaded_objects() == 0
        tpm.create_ak()  # needs two slots at once


def test_an_unreachable_tpm_is_an_agent_error() -> None:
    with pytest.raises(TPMAccessError, match="cannot open the TPM"):
        TPM("swtpm:host=127.0.0.1,port=1")
