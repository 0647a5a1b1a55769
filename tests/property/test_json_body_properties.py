"""JSON request bodies and the fields /1.0/sign and /1.0/revoke read before any
credential is checked: any bytes, any JSON document, any type in any field give
devid's own errors (400, 415) or a parsed value, never another exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import BadRequest
from fuzz.targets import json_body
from hosts.http.routing import HTTPRequest

from .mutations import corpus_inputs, json_values, mutated, mutated_tree, seeds

DOCUMENTS = [json.loads(seed[1:]) for seed in seeds("json_body")]


@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    json_body.test_one_input(data)


@given(mutated(corpus_inputs("json_body")))
def test_byte_mutations_of_valid_bodies(data: bytes) -> None:
    json_body.test_one_input(data)


@given(json_values(max_leaves=30))
def test_any_json_document(document: Any) -> None:
    json_body.test_one_input(b"\x00" + json.dumps(document).encode())


@given(st.sampled_from(DOCUMENTS).flatmap(lambda d: mutated_tree(d, json_values())))
def test_any_value_in_any_field_of_a_valid_body(document: Any) -> None:
    json_body.test_one_input(b"\x00" + json.dumps(document).encode())


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_bodies_are_bad_requests(depth: int) -> None:
    request = HTTPRequest("POST", "/1.0/sign", body=b"[" * depth + b"]" * depth)
    with pytest.raises(BadRequest):
        request.json_object()
    json_body.test_one_input(b"\x00" + request.body)
