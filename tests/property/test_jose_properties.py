"""Compact JWS tokens: any text, any header and payload JSON, and mutations of valid
tokens give BadRequest or Unauthorized, never another exception."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.jose import b64url_decode, b64url_encode
from fuzz.targets import jose

from .mutations import corpus_inputs, json_values, mutated, mutated_tree, seeds

TOKENS = [seed.decode() for seed in seeds("jose") if seed[0] != jose.ENVELOPE]


def _parts(token: str) -> tuple[Any, Any, str]:
    header, payload, signature = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload)), signature


def _token(header: Any, payload: Any, signature: str) -> bytes:
    encoded = (b64url_encode(json.dumps(value).encode()) for value in (header, payload))
    return ".".join((*encoded, signature)).encode()


PARTS = [_parts(token) for token in TOKENS]


@given(st.text(max_size=200))
def test_any_text(value: str) -> None:
    jose.test_one_input(value.encode())


@given(mutated(corpus_inputs("jose")))
def test_byte_mutations_of_valid_tokens(data: bytes) -> None:
    jose.test_one_input(data)


@given(json_values(), json_values(), st.binary(max_size=600).map(b64url_encode))
def test_any_header_and_payload(header: Any, payload: Any, signature: str) -> None:
    jose.test_one_input(_token(header, payload, signature))


@given(
    st.sampled_from(PARTS).flatmap(
        lambda p: st.tuples(
            mutated_tree(p[0], json_values()), mutated_tree(p[1], json_values()), st.just(p[2])
        )
    )
)
def test_any_value_in_any_member_of_a_valid_token(parts: tuple[Any, Any, str]) -> None:
    jose.test_one_input(_token(*parts))
