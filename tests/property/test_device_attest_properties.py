"""ACME device-attest-01 attestation objects: whatever CBOR a client sends, decoding and
the tpm, apple and step formats answer with badAttestationStatement (or accept), and
never log an unexpected error."""

from __future__ import annotations

import logging
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.acme.device_attest import decode_attestation_object
from engine.acme.problems import ACMEProblem
from fuzz.harness import CORPUS_DIR
from fuzz.targets import device_attest
from fuzz.targets.device_attest import CONTEXTS, FORMATS, KEY_AUTHORIZATIONS

from .mutations import cbor_values, corpus_inputs, mutated, mutated_tree, seeds

SEEDS = seeds("device_attest")
DOCUMENTS = [cbor2.loads(seed) for seed in SEEDS]


def _bytes_leaf(value: Any) -> st.SearchStrategy[Any]:
    """A byte string changed as a fuzzer would (certificates, TPM structures, signatures)."""
    if isinstance(value, bytes) and value:
        return mutated([value])
    return cbor_values()


def test_every_valid_seed_verifies() -> None:
    """The seeds reach the end of verification, so their mutations reach every check."""
    assert len(DOCUMENTS) >= 10
    for document in DOCUMENTS:
        obj = decode_attestation_object(cbor2.dumps(document))
        fmt = FORMATS[obj.format]
        result = fmt.verify(obj.statement, KEY_AUTHORIZATIONS[obj.format], CONTEXTS[obj.format])
        assert result.format == obj.format


@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    device_attest.test_one_input(data)


@given(mutated(corpus_inputs("device_attest")))
def test_byte_mutations_of_valid_objects(data: bytes) -> None:
    device_attest.test_one_input(data)


@given(
    st.sampled_from(DOCUMENTS).flatmap(lambda d: mutated_tree(d, cbor_values(), leaf=_bytes_leaf))
)
def test_structure_mutations_of_valid_objects(document: Any) -> None:
    device_attest.test_one_input(cbor2.dumps(document))


def _version_4(der: bytes) -> bytes:
    """The certificate with its version field set to 4 (an INTEGER 3)."""
    marker = b"\xa0\x03\x02\x01\x02"
    assert marker in der
    return der.replace(marker, b"\xa0\x03\x02\x01\x03", 1)


@pytest.mark.parametrize("name", ["tpm", "apple", "step"])
def test_a_version_4_certificate_in_x5c_is_a_bad_statement_not_an_unexpected_error(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (found by fuzzing): cryptography refuses version 4 with InvalidVersion,
    which is not a ValueError; the formats logged it as an unexpected error."""
    document = next(d for d in DOCUMENTS if d["fmt"] == name)
    statement = dict(document["attStmt"])
    statement["x5c"] = [_version_4(statement["x5c"][0]), *statement["x5c"][1:]]
    with caplog.at_level(logging.ERROR, logger="devid"), pytest.raises(ACMEProblem) as info:
        FORMATS[name].verify(statement, KEY_AUTHORIZATIONS[name], CONTEXTS[name])
    assert info.value.problem == "badAttestationStatement"
    assert "x5c[0]" in info.value.detail
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    device_attest.test_one_input(cbor2.dumps({"fmt": name, "attStmt": statement}))


def test_the_input_the_fuzzer_found_is_refused_cleanly() -> None:
    """The fuzzer's input: a tpm statement whose AK certificate says version 6."""
    crash = (CORPUS_DIR / "device_attest" / "regression-x5c-version-6").read_bytes()
    device_attest.test_one_input(crash)
