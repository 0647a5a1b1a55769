"""KDFa and KDFe against the go-tpm / TCG reference vectors (100 each)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.tpm import TPMAlg, kdfa, kdfe
from tests.vectors_path import VECTORS

TPM_VECTORS = VECTORS / "tpm"


def _cases(name: str) -> list[Any]:
    cases: list[Any] = json.loads((TPM_VECTORS / "makecredential" / name).read_text())
    return [pytest.param(case, id=case["Name"]) for case in cases]


@pytest.mark.parametrize("case", _cases("kdfa.json"))
def test_kdfa_reproduces_vector(case: dict[str, Any]) -> None:
    result = kdfa(
        int(case["HashAlg"]),
        bytes.fromhex(case["Key"]),
        case["Label"],
        bytes.fromhex(case["ContextU"]),
        bytes.fromhex(case["ContextV"]),
        int(case["Bits"]),
    )
    assert result.hex() == case["Result"]


@pytest.mark.parametrize("case", _cases("kdfe.json"))
def test_kdfe_reproduces_vector(case: dict[str, Any]) -> None:
    result = kdfe(
        int(case["HashAlg"]),
        bytes.fromhex(case["Z"]),
        case["Label"],
        bytes.fromhex(case["ContextU"]),
        bytes.fromhex(case["ContextV"]),
        int(case["Bits"]),
    )
    assert result.hex() == case["Result"]


def test_label_with_or_without_terminating_nul_is_the_same() -> None:
    with_nul = kdfa(TPMAlg.SHA256, b"k", b"STORAGE\0", b"u", b"", 128)
    assert with_nul == kdfa(TPMAlg.SHA256, b"k", "STORAGE", b"u", b"", 128)


def test_odd_bit_lengths_clear_the_unused_high_bits() -> None:
    assert kdfa(TPMAlg.SHA256, b"k", "X", b"", b"", 3)[0] < 8
    assert kdfe(TPMAlg.SHA256, b"z", "X", b"", b"", 12)[0] < 16


def test_output_spanning_several_blocks_has_the_requested_length() -> None:
    assert len(kdfa(TPMAlg.SHA1, b"k", "X", b"", b"", 8 * 50)) == 50
    assert len(kdfe(TPMAlg.SHA1, b"z", "X", b"", b"", 8 * 50)) == 50


def test_unsupported_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="hash algorithm"):
        kdfa(TPMAlg.AES, b"k", "X", b"", b"", 128)
