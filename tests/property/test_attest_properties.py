"""``POST /attest`` and ``POST /secret`` bodies: any JSON, any value in any field, and
mutations of the TPM structures, EK key and EK certificates inside a valid request
give BadRequest, Unauthorized or Forbidden, never another exception."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fuzz.harness import join, split
from fuzz.targets import attest

from .mutations import corpus_inputs, json_values, mutated, mutated_tree, seeds

BODIES = [json.loads(seed) for seed in seeds("attest") if seed[0] != attest.ENVELOPE]
REQUESTS = [body for body in BODIES if "params" in body]
ENVELOPES = [
    split(seed[1:], len(attest.FIELDS)) for seed in seeds("attest") if seed[0] == attest.ENVELOPE
]


def _b64_leaf(value: Any) -> st.SearchStrategy[Any]:
    """A base64 field with its decoded bytes mutated; any JSON value otherwise."""
    if isinstance(value, str) and len(value) > 16:
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            return json_values()
        return mutated([raw]).map(lambda b: base64.b64encode(b).decode())
    return json_values()


@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    attest.test_one_input(data)


@given(mutated(corpus_inputs("attest")))
def test_byte_mutations_of_valid_requests(data: bytes) -> None:
    attest.test_one_input(data)


@given(st.sampled_from(BODIES).flatmap(lambda b: mutated_tree(b, json_values())))
def test_any_value_in_any_field(body: Any) -> None:
    attest.test_one_input(json.dumps(body).encode())


@given(st.sampled_from(REQUESTS).flatmap(lambda b: mutated_tree(b, json_values(), leaf=_b64_leaf)))
def test_mutated_structures_keys_and_certificates_inside_a_valid_request(body: Any) -> None:
    attest.test_one_input(json.dumps(body).encode())


@given(st.sampled_from(ENVELOPES), st.integers(1, len(attest.FIELDS) - 1), st.data())
def test_one_mutated_binary_field_of_a_valid_request(
    parts: list[bytes], index: int, data: st.DataObject
) -> None:
    """The EK, its certificate or one TPM structure changed, the rest valid."""
    changed = list(parts)
    changed[index] = data.draw(mutated([parts[index]]) if parts[index] else st.binary())
    attest.test_one_input(bytes([attest.ENVELOPE]) + join(*changed))
