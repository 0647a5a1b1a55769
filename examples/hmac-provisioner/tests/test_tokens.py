"""What the HMAC type accepts and refuses, request by request, through the kit's CA."""

from __future__ import annotations

import uuid
from datetime import timedelta

import devid_hmac
import pytest
from cryptography import x509

from hosts.testing import LocalCA, csr_der, csr_pem, hs256_token
from plugins.api import Forbidden, Provisioner, Unauthorized, sign_token_claims


def token(ca: LocalCA, secret: bytes, *names: str, **options: object) -> str:
    return devid_hmac.mint_token(
        secret,
        provisioner=str(options.get("provisioner", "lab")),
        subject=names[0],
        sans=names,
        audience=ca.audience(),
        now=ca.now(),
        jti=uuid.uuid4().hex,
        csr_der=options.get("csr_der"),  # type: ignore[arg-type]
    )


def test_a_token_issues_a_certificate_for_exactly_its_names(
    ca: LocalCA, lab: Provisioner, secret: bytes
) -> None:
    names = ("db.lab.example.com", "lab.example.com")
    issued = ca.sign(csr_pem(list(names)), token(ca, secret, *names))
    assert issued.certificate.subject.rfc4514_string() == "CN=db.lab.example.com"
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert sorted(san.value.get_values_for_type(x509.DNSName)) == sorted(names)
    record = ca.certificate(issued.serial)
    assert record is not None and record.provisioner_name == "lab"
    assert record.evidence["method"] == "hmac-token"


@pytest.mark.parametrize(
    "name", ["lab.example.org", "a.db.lab.example.com", "*.lab.example.com", "10.0.0.1"]
)
def test_names_the_patterns_do_not_allow_are_forbidden(
    ca: LocalCA, lab: Provisioner, secret: bytes, name: str
) -> None:
    with pytest.raises(Forbidden):
        ca.sign(csr_pem(name), token(ca, secret, name))
    assert ca.certificate_count() == 0


def test_a_token_made_with_another_secret_is_refused(ca: LocalCA, lab: Provisioner) -> None:
    forged = token(ca, b"x" * 32, "db.lab.example.com")
    with pytest.raises(Unauthorized, match="does not verify"):
        ca.sign(csr_pem("db.lab.example.com"), forged)


def test_a_header_with_crit_is_refused(ca: LocalCA, lab: Provisioner, secret: bytes) -> None:
    claims = sign_token_claims(
        provisioner="lab",
        subject="db.lab.example.com",
        audience=ca.audience(),
        now=ca.now(),
        jti=uuid.uuid4().hex,
    )
    crit = hs256_token(claims, secret, headers={"crit": ["exp"]})
    with pytest.raises(Unauthorized, match="crit"):
        ca.sign(csr_pem("db.lab.example.com"), crit)


def test_an_hmac_token_never_reaches_the_jwk_provisioner(
    ca: LocalCA, lab: Provisioner, secret: bytes
) -> None:
    # The same secret, naming the CA's JWK provisioner "admin": JWK reads no HMAC.
    forged = token(ca, secret, "db.lab.example.com", provisioner="admin")
    with pytest.raises(Unauthorized):
        ca.sign(csr_pem("db.lab.example.com"), forged)
    assert ca.certificate_count() == 0


def test_a_bound_token_issues_only_for_its_csr(
    ca: LocalCA, table: dict[str, object], secret: bytes
) -> None:
    ca.add_provisioner({**table, "require_csr_binding": True})
    csr = csr_pem("db.lab.example.com")
    with pytest.raises(Unauthorized, match="csr_sha256"):
        ca.sign(csr, token(ca, secret, "db.lab.example.com"))
    other = csr_pem("db.lab.example.com")
    with pytest.raises(Forbidden):
        ca.sign(other, token(ca, secret, "db.lab.example.com", csr_der=csr_der(csr)))
    ca.sign(csr, token(ca, secret, "db.lab.example.com", csr_der=csr_der(csr)))


def test_the_certificate_lives_as_long_as_asked_within_the_limits(
    ca: LocalCA, lab: Provisioner, secret: bytes
) -> None:
    issued = ca.sign(
        csr_pem("db.lab.example.com"),
        token(ca, secret, "db.lab.example.com"),
        not_after=timedelta(hours=2),
    )
    lifetime = issued.certificate.not_valid_after_utc - ca.now()
    assert timedelta(hours=1, minutes=59) < lifetime <= timedelta(hours=2)
