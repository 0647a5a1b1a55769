"""Hypothesis strategies shared by the property tests: the seed corpora of fuzz/, byte
mutations of them, and structure-aware mutations of JSON and CBOR documents (any node
replaced by a value of any type, members dropped or added)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

from engine.der import read_tlv, tlv
from fuzz.harness import corpus

INTERESTING_BYTES = (0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0x82, 0xFF)


def seeds(target: str) -> list[bytes]:
    """The valid inputs of *target*'s corpus (``seed-*``, written by ``python -m fuzz
    --write-seeds``)."""
    return [path.read_bytes() for path in corpus(target) if path.name.startswith("seed-")]


def corpus_inputs(target: str) -> list[bytes]:
    """Every input of *target*'s corpus: the seeds, regressions and what the fuzzer kept."""
    return [path.read_bytes() for path in corpus(target)]


@st.composite
def mutated(draw: st.DrawFn, originals: Sequence[bytes]) -> bytes:
    """A seed with a few byte-level changes, as a fuzzer makes them."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate", "copy")))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[position:]
        elif kind == "copy" and data:
            size = draw(st.integers(1, 32))
            target = draw(st.integers(0, len(data)))
            data[target:target] = data[position : position + size]
    return bytes(data)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value, with the numbers and strings parsers trip over."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.sampled_from((0, -1, 2**31, 2**63, -(2**64), 10**20, 10**400))
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
        | st.sampled_from(("", "0", "-", "\x00", "\ud7ff", "a" * 300))
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def cbor_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any CBOR value devid's decoder lets through: JSON's plus byte strings and big
    integers, as map keys too."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.sampled_from((-7, -257, -65535, 2**64, -(2**64) - 1, 10**40))
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=20)
        | st.binary(max_size=64)
    )
    keys = st.text(max_size=8) | st.integers() | st.binary(max_size=8)
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every node of a JSON/CBOR tree, by the keys and indices leading to it."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated_tree(
    draw: st.DrawFn,
    document: Any,
    values: st.SearchStrategy[Any],
    *,
    leaf: Callable[[Any], st.SearchStrategy[Any]] | None = None,
) -> Any:
    """*document* with one to three nodes changed: replaced by any value, dropped from
    their map, or (through *leaf*) changed in a way that fits their type."""
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        current = _get(document, path)
        action = draw(st.sampled_from(("replace", "drop", "leaf", "leaf")))
        if action == "drop" and path and isinstance(_get(document, path[:-1]), dict):
            parent = dict(_get(document, path[:-1]))
            del parent[path[-1]]
            document = _replace(document, path[:-1], parent)
        elif action == "leaf" and leaf is not None:
            document = _replace(document, path, draw(leaf(current)))
        else:
            document = _replace(document, path, draw(values))
    return document


def finite(value: Any) -> bool:
    """Whether *value* holds no NaN or infinity (JSON cannot carry them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


def with_duplicate_first_extension(der: bytes) -> bytes:
    """A DER certificate with its first extension twice (its signature no longer matches:
    for certificates whose own signature is not what is being tested)."""
    _, certificate, _ = read_tlv(der)
    tag, tbs, end = read_tlv(certificate)
    items: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(tbs):
        item_tag, value, offset = read_tlv(tbs, offset)
        items.append((item_tag, value))
    assert items[-1][0] == 0xA3  # [3] extensions
    _, extensions, _ = read_tlv(items[-1][1])
    _, _, first_end = read_tlv(extensions)
    items[-1] = (0xA3, tlv(0x30, extensions + extensions[:first_end]))
    changed = b"".join(tlv(item_tag, value) for item_tag, value in items)
    return tlv(0x30, tlv(tag, changed) + certificate[end:])
