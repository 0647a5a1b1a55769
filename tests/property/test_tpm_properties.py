"""TPM 2.0 structures (TPMT_PUBLIC, TPMS_CREATION_DATA, TPMS_ATTEST, TPMT_SIGNATURE,
TPML_PCR_SELECTION) and the AK creation check: any bytes and mutations of what a TPM
produces give TPMError (a BadRequest), never another exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.tpm import verify_ak_creation
from fuzz.harness import join, split
from fuzz.targets import tpm
from fuzz.targets.tpm import AK_CREATION

from .mutations import corpus_inputs, mutated, seeds

SEEDS = seeds("tpm")
CREATIONS = [split(seed[1:], 4) for seed in SEEDS if seed[0] == AK_CREATION]


def test_the_seeds_hold_valid_ak_creation_evidence() -> None:
    assert len(CREATIONS) >= 2
    for parts in CREATIONS:
        verify_ak_creation(*parts)


@given(st.integers(0, 5), st.binary(max_size=300))
def test_random_bytes_as_every_structure(selector: int, data: bytes) -> None:
    tpm.test_one_input(bytes([selector]) + data)


@given(mutated(corpus_inputs("tpm")))
def test_byte_mutations_of_valid_structures(data: bytes) -> None:
    tpm.test_one_input(data)


@given(st.sampled_from(CREATIONS), st.integers(0, 3), st.data())
def test_one_mutated_structure_in_valid_ak_creation_evidence(
    parts: list[bytes], index: int, data: st.DataObject
) -> None:
    changed = list(parts)
    changed[index] = data.draw(mutated([parts[index]]))
    tpm.test_one_input(bytes([AK_CREATION]) + join(*changed))
