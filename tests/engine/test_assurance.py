"""Assurance markers: one certificate-policy OID per enrolment method, read back from a
certificate, and what each enrolment path puts in its certificates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.assurance import ASSURANCE_ARC, Assurance, SetAssurance
from engine.extensions import DEVID_ARC
from engine.template import CertificateTemplate
from plugins.acme.provisioner import assurance_of


def _certificate(*policies: x509.ObjectIdentifier) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    if policies:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(p, None) for p in policies]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256())


def test_each_level_has_its_own_oid_under_devids_arc() -> None:
    oids = [level.oid for level in Assurance]
    assert len(set(oids)) == len(oids)
    assert ASSURANCE_ARC.startswith(DEVID_ARC)
    assert all(oid.dotted_string.startswith(ASSURANCE_ARC + ".") for oid in oids)
    assert Assurance.MDM_CHALLENGE.label == "mdm-challenge"


@pytest.mark.parametrize("level", list(Assurance))
def test_a_marker_reads_back(level: Assurance) -> None:
    assert Assurance.of(_certificate(level.oid)) is level


def test_no_marker_or_two_markers_read_as_none() -> None:
    assert Assurance.of(_certificate()) is None
    assert Assurance.of(_certificate(x509.ObjectIdentifier("2.5.29.32.0"))) is None
    both = _certificate(Assurance.TOKEN.oid, Assurance.TPM_ATTESTED.oid)
    assert Assurance.of(both) is None


def test_set_assurance_replaces_any_other_policy_extension() -> None:
    template = CertificateTemplate(subject=x509.Name([]))
    once = SetAssurance(Assurance.TOKEN).modify(template)
    twice = SetAssurance(Assurance.OPERATOR).modify(once)
    (extension,) = twice.extra_extensions
    assert not extension.critical
    assert [p.policy_identifier for p in extension.value] == [Assurance.OPERATOR.oid]


@pytest.mark.parametrize(
    ("formats", "level"),
    [
        ((), Assurance.DOMAIN_VALIDATED),
        (("tpm",), Assurance.TPM_ATTESTED),
        (("apple",), Assurance.HARDWARE_ATTESTED),
        (("tpm", "step"), Assurance.HARDWARE_ATTESTED),
    ],
)
def test_acme_orders_are_marked_by_what_proved_them(
    formats: tuple[str, ...], level: Assurance
) -> None:
    authorizations = [SimpleNamespace(attestation={"format": f}) for f in formats] or [
        SimpleNamespace(attestation=None)
    ]
    assert assurance_of(authorizations) is level
