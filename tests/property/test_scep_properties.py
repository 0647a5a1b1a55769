"""SCEP messages (engine/scep): any bytes, byte mutations of valid messages, and
structure-aware mutations (any DER node of a message, envelope, CSR or name replaced,
retagged, dropped or repeated; signed attributes and requests changed and signed again)
give a SCEPFailure or a result, never another exception."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.der import read_tlv, tlv
from engine.errors import BadRequest
from engine.scep import (
    SCEPFailure,
    decrypt_envelope,
    read_cert_rep,
    read_certs_only,
    read_csr,
    read_issuer_and_serial,
    read_issuer_and_subject,
    read_pki_message,
)
from fuzz.targets import scep

from .mutations import corpus_inputs, mutated, seeds

SEEDS = seeds("scep")


def _form(form: int) -> list[bytes]:
    return [seed[1:] for seed in SEEDS if seed[0] == form]


MESSAGES = _form(scep.MESSAGE)
ENVELOPES = _form(scep.ENVELOPE)
CSRS = _form(scep.CSR)
INFOS = _form(scep.RESIGN_CSR)
NAMES = _form(scep.NAMES)
REPLIES = _form(scep.CERT_REP)
ATTRIBUTES = _form(scep.ATTRIBUTES)
CONTENTS = _form(scep.CONTENT)


def only_scep_failures(parse: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """*parse* returns or raises SCEPFailure; anything else fails the test."""
    try:
        parse(*args, **kwargs)
    except SCEPFailure as failure:
        assert str(failure) == failure.text and failure.text


# --- DER trees ----------------------------------------------------------------------

Node = list[Any]  # [tag, bytes | list[Node]]


def _parse(data: bytes) -> list[Node] | None:
    """The DER elements of *data* as a tree, or None when it is not a run of elements."""
    nodes: list[Node] = []
    offset = 0
    try:
        while offset < len(data):
            tag, value, offset = read_tlv(data, offset)
            children = _parse(value) if tag & 0x20 and value else None
            nodes.append([tag, value if children is None else children])
    except BadRequest:
        return None
    return nodes


def _encode(nodes: list[Node]) -> bytes:
    return b"".join(
        tlv(tag, value if isinstance(value, bytes) else _encode(value)) for tag, value in nodes
    )


def _copy(node: Node) -> Node:
    copied = _parse(_encode([node]))
    assert copied is not None
    return copied[0]


def _paths(nodes: list[Node], prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for index, (_, value) in enumerate(nodes):
        out.append((*prefix, index))
        if not isinstance(value, bytes):
            out.extend(_paths(value, (*prefix, index)))
    return out


def _siblings(nodes: list[Node], path: tuple[int, ...]) -> list[Node]:
    for index in path[:-1]:
        nodes = nodes[index][1]
    return nodes


REPLACEMENTS = (
    b"\x02\x01\x00",  # INTEGER 0
    b"\x02\x01\xff",  # INTEGER -1
    b"\x02\x09\x01" + b"\x00" * 8,  # INTEGER 2**64
    b"\x05\x00",  # NULL
    b"\x30\x00",  # empty SEQUENCE
    b"\x31\x00",  # empty SET
    b"\x04\x00",  # empty OCTET STRING
    b"\x03\x01\x07",  # BIT STRING with unused bits and no content
    b"\x06\x03\x2a\x86\x48",  # an OID
    b"\x06\x01\x80",  # a malformed OID
    b"\x13\x02\x31\x39",  # PrintableString "19"
    b"\x13\x01\xff",  # PrintableString with a byte it cannot hold
    b"\x0c\x02\xc3\x28",  # UTF8String of invalid UTF-8
    b"\x1e\x01\x00",  # BMPString of odd length
    b"\x17\x0d" + b"991332256099Z",  # UTCTime out of range
    b"\x18\x04" + b"2026",  # GeneralizedTime, truncated
    b"\x01\x01\x01",  # BOOLEAN not DER
    b"\xa0\x00",
    b"\xa0\x80\x00\x00",  # indefinite length
)


@st.composite
def mutated_der(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    """A DER value with one to three nodes changed anywhere in its tree."""
    original = originals[draw(st.integers(0, len(originals) - 1))]
    tree = _parse(original)
    if tree is None:
        return original
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(tree)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        siblings = _siblings(tree, path)
        index = path[-1]
        kind = draw(st.sampled_from(("replace", "retag", "drop", "repeat", "bytes", "swap")))
        if kind == "replace":
            replacement = _parse(draw(st.sampled_from(REPLACEMENTS)))
            if replacement:
                siblings[index] = replacement[0]
        elif kind == "retag":
            siblings[index] = [draw(st.integers(0, 255)), _encode([siblings[index]])[2:]]
        elif kind == "drop":
            del siblings[index]
        elif kind == "repeat":
            siblings.insert(index, _copy(siblings[index]))
        elif kind == "bytes":
            siblings[index] = [siblings[index][0], draw(st.binary(max_size=40))]
        else:
            other = draw(st.sampled_from(paths))
            siblings[index] = _copy(_siblings(tree, other)[other[-1]])
    return _encode(tree)


# --- the seeds are what they say ---------------------------------------------------------


def test_the_seeds_reach_every_parser() -> None:
    assert len(MESSAGES) >= 10 and len(ENVELOPES) >= 10 and len(CSRS) >= 4
    assert len(INFOS) >= 3 and len(NAMES) == 2 and len(REPLIES) >= 5 and ATTRIBUTES
    for der in MESSAGES:
        message = read_pki_message(der)
        assert message.enveloped is not None
        if message.signer != scep.CLIENT.certificate and message.digest == "sha1":
            continue  # the macOS vector, encrypted to another RA
        plaintext = decrypt_envelope(
            message.enveloped, scep.RA.certificate, scep.RA_KEY, allowed=scep.ALL
        )
        assert plaintext
    for der in CSRS:
        read_csr(der)
    versions = {read_csr(scep.sign_request_info(info)).version for info in INFOS}
    assert versions == {0, 2}
    for der in ATTRIBUTES:
        message = scep.message_with_attributes(der)
        assert message is not None
        assert read_pki_message(message).enveloped is None
    for der in NAMES:
        try:
            read_issuer_and_subject(der)
        except SCEPFailure:
            read_issuer_and_serial(der)


# --- any bytes, byte mutations ---------------------------------------------------------


@given(st.integers(0, scep.FORMS - 1), st.binary(max_size=300))
def test_random_bytes_in_every_form(form: int, data: bytes) -> None:
    scep.test_one_input(bytes([form]) + data)


@given(st.binary(max_size=300))
def test_random_bytes_to_each_reader(data: bytes) -> None:
    only_scep_failures(read_pki_message, data)
    only_scep_failures(decrypt_envelope, data, scep.RA.certificate, scep.RA_KEY, allowed=scep.ALL)
    only_scep_failures(read_csr, data)
    only_scep_failures(read_issuer_and_subject, data)
    only_scep_failures(read_issuer_and_serial, data)
    only_scep_failures(read_certs_only, data)
    only_scep_failures(read_cert_rep, data, trusted=[scep.RA.certificate])


@given(mutated(corpus_inputs("scep")))
def test_byte_mutations_of_the_corpus(data: bytes) -> None:
    scep.test_one_input(data)


@given(mutated(MESSAGES))
def test_byte_mutations_of_messages(data: bytes) -> None:
    only_scep_failures(read_pki_message, data)


# --- structure-aware mutations ---------------------------------------------------------


@given(mutated_der(MESSAGES))
def test_der_mutations_of_messages(data: bytes) -> None:
    scep.pipeline(data)
    only_scep_failures(read_pki_message, data)


@given(mutated_der(ENVELOPES))
def test_der_mutations_of_envelopes(data: bytes) -> None:
    only_scep_failures(decrypt_envelope, data, scep.RA.certificate, scep.RA_KEY, allowed=scep.ALL)


@given(mutated_der(CSRS))
def test_der_mutations_of_csrs(data: bytes) -> None:
    only_scep_failures(read_csr, data)


@given(mutated_der(INFOS))
def test_der_mutations_of_requests_signed_again(info: bytes) -> None:
    """What a client can send: any change to its request, with a valid self-signature."""
    only_scep_failures(read_csr, scep.sign_request_info(info))


@given(mutated_der(NAMES))
def test_der_mutations_of_names(data: bytes) -> None:
    only_scep_failures(read_issuer_and_subject, data)
    only_scep_failures(read_issuer_and_serial, data)


@given(mutated_der(REPLIES))
def test_der_mutations_of_replies(data: bytes) -> None:
    only_scep_failures(
        read_cert_rep,
        data,
        trusted=[scep.RA.certificate],
        recipient=scep.CLIENT.certificate,
        key=scep.CLIENT_KEY,
    )
    only_scep_failures(read_certs_only, data)


@given(mutated_der(ATTRIBUTES))
def test_der_mutations_of_signed_attributes_signed_again(contents: bytes) -> None:
    """Any signed attributes, with a valid signature by the certificate the message
    carries: the attribute readers behind the signature check."""
    message = scep.message_with_attributes(contents)
    if message is not None:
        only_scep_failures(read_pki_message, message)


@given(mutated_der(CONTENTS))
def test_der_mutations_of_contents_in_valid_messages(content: bytes) -> None:
    scep.pipeline(scep.message_with_content(content))
