"""ACME request bodies: any bytes, any flattened JWS, any protected header (a jwk of
any shape included), and any newAccount payload (contacts, flags, external account
binding) give ACME problems, never another exception."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.jose import b64url_decode, b64url_encode
from fuzz.targets import acme_jws

from .mutations import corpus_inputs, json_values, mutated, mutated_tree, seeds

BODIES = [json.loads(seed[1:]) for seed in seeds("acme_jws") if seed[0] == 0]


def _decoded(body: dict[str, str]) -> dict[str, Any]:
    """A flattened JWS with its protected header and payload decoded (for mutating)."""
    payload = body["payload"]
    return {
        "protected": json.loads(b64url_decode(body["protected"])),
        "payload": json.loads(b64url_decode(payload)) if payload else None,
        "signature": body["signature"],
    }


def _encoded(jws: dict[str, Any]) -> bytes:
    out = dict(jws)
    for member in ("protected", "payload"):
        if member in out and out[member] is not None:
            out[member] = b64url_encode(json.dumps(out[member]).encode())
        elif member in out:
            out[member] = ""
    return b"\x00" + json.dumps(out).encode()


DECODED = [_decoded(body) for body in BODIES]


@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    acme_jws.test_one_input(data)


@given(mutated(corpus_inputs("acme_jws")))
def test_byte_mutations_of_valid_requests(data: bytes) -> None:
    acme_jws.test_one_input(data)


@given(st.sampled_from(BODIES).flatmap(lambda b: mutated_tree(b, json_values())))
def test_any_value_in_the_flattened_jws(body: Any) -> None:
    acme_jws.test_one_input(b"\x00" + json.dumps(body).encode())


@given(st.sampled_from(DECODED).flatmap(lambda d: mutated_tree(d, json_values())))
def test_any_value_in_the_protected_header_or_payload(jws: Any) -> None:
    """Reaches the jwk, the nonce and url checks, newAccount's fields, the external
    account binding and keyChange's inner JWS with values of every type."""
    if isinstance(jws, dict):
        acme_jws.test_one_input(_encoded(jws))
