"""Certificate signing requests: any bytes, mutated DER and PEM of valid requests of
every key type give BadRequest or a parsed request, never another exception."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from engine.csr import parse_csr
from fuzz.targets import csr

from .mutations import corpus_inputs, mutated, seeds

DER = [seed for seed in seeds("csr") if seed.startswith(b"0")]


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


@given(mutated(DER))
def test_mutated_der_inside_pem(der: bytes) -> None:
    csr.test_one_input(_pem(der))
