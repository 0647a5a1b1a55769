"""Certificate signing requests: any bytes, mutated DER and PEM of valid requests of
every key type give BadRequest or a parsed request, never another exception."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from engine.csr import parse_csr
from engine.errors import BadRequest
from fuzz.targets import csr
from fuzz.targets import csr as csr_target

from .mutations import corpus_inputs, mutated, seeds

DER = [seed for seed in seeds("csr") if seed.startswith(b"0")]
INFOS = [seed[1:] for seed in seeds("csr") if seed[0] == csr.RESIGN]


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + body + b"-----END CERTIFICATE REQUEST-----\n"


def test_every_valid_seed_parses() -> None:
    assert len(DER) >= 6
    for der in DER:
        assert parse_csr(der).der == der
        assert parse_csr(_pem(der).decode()).der == der


@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    csr.test_one_input(data)


@given(mutated(corpus_inputs("csr")))
def test_byte_mutations_of_valid_requests(data: bytes) -> None:
    csr.test_one_input(data)


def test_the_resigning_seeds_parse() -> None:
    assert len(INFOS) >= 3
    for info in INFOS:
        parse_csr(csr.sign(info))


@given(mutated(INFOS))
def test_mutated_requests_signed_again(info: bytes) -> None:
    """What a client can send: any change to its request, with a valid self-signature."""
    csr.test_one_input(bytes([csr.RESIGN]) + info)


@given(mutated(DER))
def test_mutated_der_inside_pem(der: bytes) -> None:
    csr.test_one_input(_pem(der))


def test_a_self_signed_csr_whose_name_holds_a_bit_string_is_a_bad_request() -> None:
    """Regression (found with the re-signing fuzz input): a subject attribute of type BIT
    STRING made cryptography raise TypeError while reading the name, after the
    self-signature had verified (a 500 at /1.0/sign and ACME finalize, before any
    token is checked)."""
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-p256")])
    )
    der = csr.sign(csr_target.SIGNING_KEY, hashes.SHA256()).public_bytes(Encoding.DER)
    info = csr_target.request_info(der)
    common_name = bytes([0x0C, 11]) + b"device-p256"
    assert common_name in info
    hostile = csr_target.sign(info.replace(common_name, bytes([0x03, 11, 0]) + b"evice-p256"))
    with pytest.raises(BadRequest, match="malformed"):
        parse_csr(hostile)
    csr_target.test_one_input(hostile)
