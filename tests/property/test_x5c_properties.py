"""X5C token chains: any bytes as certificates, and mutations of valid chains (each
certificate's DER, the order, extra or missing certificates) give BadRequest or
Unauthorized, never another exception."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from fuzz.harness import CORPUS_DIR, FIXTURES_DIR, NOW
from fuzz.targets import x5c
from fuzz.targets.x5c import split_der

from .mutations import corpus_inputs, mutated, seeds, with_duplicate_first_extension

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


def _bit_string_subject(der: bytes) -> bytes:
    """The certificate with its subject's commonName (UTF8String) turned into a BIT
    STRING of the same length: an attribute type cryptography allows only for
    x500UniqueIdentifier, so reading the subject raises TypeError, not ValueError."""
    common_name = bytes([0x0C, 11]) + b"device-p256"
    assert common_name in der
    return der.replace(common_name, bytes([0x03, 11, 0]) + b"evice-p256", 1)


def test_a_name_holding_a_bit_string_is_refused_not_crashed_on() -> None:
    """Regression (found by fuzzing): a name attribute of type BIT STRING made reading
    the name raise TypeError, which X5C verification let through (a 500)."""
    from engine.errors import ProtocolError

    alg, chain = next((a, c) for a, c in CHAINS if b"device-p256" in c[0])
    hostile = [_bit_string_subject(chain[0]), *chain[1:]]
    token = x5c.token(hostile, x5c.ALGORITHMS[alg])
    with pytest.raises(ProtocolError) as info:
        x5c.PROVISIONER.verify_token(token, x5c.CONTEXT)
    assert "x5c[0]" in info.value.detail
    x5c.test_one_input(bytes([alg]) + b"".join(hostile))


def test_the_input_the_fuzzer_found_is_refused_cleanly() -> None:
    """The fuzzer's input: an x5c leaf whose name holds a BIT STRING attribute."""
    x5c.test_one_input((CORPUS_DIR / "x5c" / "regression-name-bit-string").read_bytes())


# --- chains an attacker signs: a leaf under an intermediate of the attacker's own key ------

_ATTACKER_KEY = ec.generate_private_key(ec.SECP256R1())
_LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
_ROOT_NAME = x509.load_der_x509_certificate(
    (FIXTURES_DIR / "x5c" / "root.der").read_bytes()
).subject
_EXTENSION_OIDS = [
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.NAME_CONSTRAINTS,
    ExtensionOID.CERTIFICATE_POLICIES,
]


def _attacker_chain(extensions: list[tuple[x509.ObjectIdentifier, bytes, bool]]) -> list[bytes]:
    """[leaf, intermediate]: the intermediate names the real root as its issuer but is the
    attacker's (its own signature is junk), and carries *extensions* as raw DER; the leaf
    is properly signed by it, so path building looks at the intermediate's extensions."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Attacker CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(_ROOT_NAME)
        .public_key(_ATTACKER_KEY.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
    )
    for oid, value, critical in extensions:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical)
    intermediate = builder.sign(_ATTACKER_KEY, hashes.SHA256())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-1")]))
        .issuer_name(name)
        .public_key(_LEAF_KEY.public_key())
        .serial_number(2)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(_ATTACKER_KEY, hashes.SHA256())
    )
    return [c.public_bytes(Encoding.DER) for c in (leaf, intermediate)]


@given(
    st.lists(
        st.tuples(st.sampled_from(_EXTENSION_OIDS), st.binary(max_size=12), st.booleans()),
        max_size=3,
        unique_by=lambda e: e[0],
    )
)
def test_any_extensions_on_an_intermediate_the_attacker_signs_with(
    extensions: list[tuple[x509.ObjectIdentifier, bytes, bool]],
) -> None:
    leaf, intermediate = _attacker_chain(extensions)
    x5c.test_one_input(bytes([x5c.ALGORITHMS.index("ES256")]) + leaf + intermediate)


def test_an_intermediate_with_a_duplicate_extension_is_refused_not_crashed_on() -> None:
    """cryptography raises DuplicateExtension (not a ValueError) when path building reads
    such an intermediate's basicConstraints, and anyone can make one and sign a leaf
    with it: the chain is refused."""
    from engine.errors import ProtocolError

    ca = (ExtensionOID.BASIC_CONSTRAINTS, bytes.fromhex("30030101ff"), True)
    leaf, intermediate = _attacker_chain([ca])
    hostile = with_duplicate_first_extension(intermediate)
    token = x5c.token([leaf, hostile], "ES256")
    with pytest.raises(ProtocolError):
        x5c.PROVISIONER.verify_token(token, x5c.CONTEXT)
    x5c.test_one_input(bytes([x5c.ALGORITHMS.index("ES256")]) + leaf + hostile)
