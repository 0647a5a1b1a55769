"""X5C token chains: any bytes as certificates, and mutations of valid chains (each
certificate's DER, the order, extra or missing certificates) give BadRequest or
Unauthorized, never another exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fuzz.targets import x5c
from fuzz.targets.x5c import split_der

from .mutations import corpus_inputs, mutated, seeds

CHAINS = [(seed[0], split_der(seed[1:])) for seed in seeds("x5c")]


def test_the_seed_chains_verify_up_to_the_signature() -> None:
    """The seeds chain to the fixture root, so their mutations reach every path check."""
    from engine.errors import Unauthorized

    for alg, chain in CHAINS:
        token = x5c.token(chain, x5c.ALGORITHMS[alg])
        try:
            x5c.PROVISIONER.verify_token(token, x5c.CONTEXT)
        except Unauthorized as exc:
            assert "signature" in exc.detail
        else:
            raise AssertionError("a token with a junk signature verified")


@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    x5c.test_one_input(data)


@given(mutated(corpus_inputs("x5c")))
def test_byte_mutations_of_valid_chains(data: bytes) -> None:
    x5c.test_one_input(data)


@given(st.sampled_from(CHAINS), st.data())
def test_one_mutated_certificate_in_a_valid_chain(
    chain: tuple[int, list[bytes]], data: st.DataObject
) -> None:
    alg, certificates = chain
    index = data.draw(st.integers(0, len(certificates) - 1))
    changed = list(certificates)
    changed[index] = data.draw(mutated([certificates[index]]))
    x5c.test_one_input(bytes([alg]) + b"".join(changed))


@given(st.sampled_from(CHAINS), st.permutations(range(3)), st.integers(0, 2))
def test_reordered_and_shortened_chains(
    chain: tuple[int, list[bytes]], order: list[int], keep: int
) -> None:
    alg, certificates = chain
    picked = [certificates[i] for i in order if i < len(certificates)][: keep + 1]
    x5c.test_one_input(bytes([alg]) + b"".join(picked))
