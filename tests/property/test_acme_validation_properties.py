"""What a client's own servers answer during ACME validation: any tls-alpn-01
certificate, any http-01 response and any redirect Location give a challenge
problem (an ACME problem with a 4xx status), never another exception: an
unexpected one would be logged with its traceback and recorded as serverInternal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.acme.problems import ACMEProblem
from fuzz.harness import CORPUS_DIR
from fuzz.targets import acme_validation

from .mutations import corpus_inputs, mutated, seeds, with_duplicate_first_extension

SEEDS = seeds("acme_validation")
CERTIFICATES = [seed[1:] for seed in SEEDS if seed[0] in (0, 1)]
RESPONSES = [seed[1:] for seed in SEEDS if seed[0] == 3]


def test_the_seed_certificates_pass_the_check() -> None:
    assert len(CERTIFICATES) == 2
    acme_validation._certificate(CERTIFICATES[0], acme_validation.HOST)
    acme_validation._certificate(CERTIFICATES[1], acme_validation.ADDRESS)


@given(st.integers(0, 3), st.binary(max_size=300))
def test_random_bytes_as_every_answer(selector: int, data: bytes) -> None:
    acme_validation.test_one_input(bytes([selector]) + data)


@given(mutated(corpus_inputs("acme_validation")))
def test_byte_mutations_of_valid_answers(data: bytes) -> None:
    acme_validation.test_one_input(data)


@given(st.sampled_from(RESPONSES), st.data())
def test_mutated_http_responses(response: bytes, data: st.DataObject) -> None:
    acme_validation.test_one_input(b"\x03" + data.draw(mutated([response])))


@given(st.text(max_size=80))
def test_any_location(location: str) -> None:
    acme_validation.test_one_input(b"\x02" + location.encode("utf-8", "surrogatepass"))


def test_a_validation_certificate_of_version_4_is_an_incorrect_response() -> None:
    """Regression (found by fuzzing): cryptography refuses version 4 with InvalidVersion,
    not ValueError; validation logged it as unexpected and recorded serverInternal."""
    der = CERTIFICATES[0]
    version_3 = bytes.fromhex("a003020102")
    assert version_3 in der
    hostile = der.replace(version_3, bytes.fromhex("a003020103"), 1)
    with pytest.raises(ACMEProblem) as info:
        acme_validation._certificate(hostile, acme_validation.HOST)
    assert info.value.problem == "incorrectResponse"
    assert "cannot be parsed" in info.value.detail


def test_the_inputs_the_fuzzer_found_are_refused_cleanly() -> None:
    for path in sorted((CORPUS_DIR / "acme_validation").glob("regression-*")):
        acme_validation.test_one_input(path.read_bytes())


def test_a_validation_certificate_with_a_duplicate_extension_is_an_incorrect_response() -> None:
    """cryptography raises DuplicateExtension (not a ValueError) when reading them."""
    with pytest.raises(ACMEProblem) as info:
        acme_validation._certificate(
            with_duplicate_first_extension(CERTIFICATES[0]), acme_validation.HOST
        )
    assert info.value.problem == "incorrectResponse"
