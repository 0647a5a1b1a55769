"""The Attestation CA's state machine: begin_attestation checks the device, its EK and its AK;
answer_challenge accepts the right secret, once, in time.

software TPM stand-in: the real swtpm exchange is tested in tests/agent.
The fake device (tests/attestation_fakes.py) lets every refusal be produced precisely.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from engine.attestation import (
    AttestationPolicy,
    AttestationSession,
    AttestRequest,
    EKCertificatePolicy,
    SessionState,
    TPMInfo,
    answer_challenge,
    begin_attestation,
    session_id_for_secret,
)
from engine.attestation.session import SECRET_BYTES, Challenge, parse_answer
from engine.errors import BadRequest, Forbidden, ProtocolError, Unauthorized
from engine.inventory import Device, DeviceStatus, ek_digest
from engine.ports import CountingRandom, FrozenClock
from engine.tpm import ObjectAttributes, TPMAlg, TPMError
from tests.attestation_fakes import (
    AK_ATTRIBUTES,
    FakeDevice,
    ec_key,
    make_ak,
    make_device,
    make_ek,
    make_vendor,
    rsa_key,
)

LIFETIME = timedelta(seconds=60)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def random() -> CountingRandom:
    return CountingRandom(b"attestation-tests")


def policy(**changes: Any) -> AttestationPolicy:
    return AttestationPolicy(challenge_lifetime=LIFETIME, **changes)


def begin(
    device: FakeDevice,
    clock: FrozenClock,
    random: CountingRandom,
    *,
    registered: Device | str | None = "active",
    body: dict[str, Any] | None = None,
    **policy_changes: Any,
) -> tuple[AttestationSession, Challenge]:
    record: Device | None
    if registered == "active":
        record = Device(device.urn)
    elif registered == "disabled":
        record = Device(device.urn, status=DeviceStatus.DISABLED)
    else:
        assert not isinstance(registered, str)
        record = registered
    request = AttestRequest.parse(body if body is not None else device.attest_body())
    return begin_attestation(request, record, policy(**policy_changes), clock.now(), random)


def expect(
    error: type[ProtocolError], match: str | None, action: Callable[[], object]
) -> ProtocolError:
    """*action* raises *error* (a ProtocolError, never anything else) matching *match*."""
    with pytest.raises(ProtocolError, match=match) as info:
        action()
    assert isinstance(info.value, error), info.value
    assert info.value.status == error.status
    return info.value


# --- the happy path ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ek_kind", "ak_kind"), [("rsa", "ecc"), ("ecc", "ecc"), ("rsa", "rsa"), ("ecc", "rsa")]
)
def test_a_device_that_releases_the_secret_is_activated(
    ek_kind: str, ak_kind: str, clock: FrozenClock, random: CountingRandom
) -> None:
    device = make_device(ek_kind, ak_kind)
    session, challenge = begin(device, clock, random)

    assert session.state is SessionState.CHALLENGED
    assert session.ek_urn == device.urn
    assert session.ek_digest == ek_digest(device.ek.public_key)
    assert session.ak_public == device.ak.public_bytes
    assert session.ak_name == device.ak.name
    assert session.expires_at == clock.now() + LIFETIME
    assert session.ek_certificate is None and not session.ek_certificate_verified

    secret = device.recover(challenge.to_json())
    assert len(secret) == SECRET_BYTES
    assert session.id == session_id_for_secret(secret)

    clock.advance(timedelta(seconds=5))
    activated = answer_challenge(session, secret, clock.now())
    assert activated.state is SessionState.ACTIVATED
    assert activated.id == session.id


def test_the_challenge_is_the_tpm2b_credential_blob_and_encrypted_seed(
    clock: FrozenClock, random: CountingRandom
) -> None:
    device = make_device("rsa")
    _, challenge = begin(device, clock, random)
    wire = challenge.to_json()
    assert set(wire) == {"credential", "secret"}
    credential = base64.b64decode(wire["credential"], validate=True)
    secret = base64.b64decode(wire["secret"], validate=True)
    assert int.from_bytes(credential[:2], "big") == len(credential) - 2
    assert int.from_bytes(secret[:2], "big") == len(secret) - 2 == 256  # RSA-2048 OAEP


def test_the_ak_name_is_computed_by_the_server_and_binds_the_credential(
    clock: FrozenClock, random: CountingRandom
) -> None:
    """MakeCredential goes to the name of the checked public area: a TPM holding a
    different object (say, a key without fixedTPM) cannot release the secret."""
    device = make_device("ecc")
    _, challenge = begin(device, clock, random)
    other = make_ak("ecc", slot=7, attributes=AK_ATTRIBUTES & ~ObjectAttributes.FIXED_TPM)
    impostor = attrs.evolve(device, ak=other)
    with pytest.raises(TPMError, match="integrity"):
        impostor.recover(challenge.to_json())


def test_every_attestation_gets_a_fresh_secret(clock: FrozenClock, random: CountingRandom) -> None:
    device = make_device("ecc")
    first, first_challenge = begin(device, clock, random)
    second, second_challenge = begin(device, clock, random)
    assert first.id != second.id
    assert first_challenge.to_json() != second_challenge.to_json()
    assert device.recover(first_challenge.to_json()) != device.recover(second_challenge.to_json())


def test_a_session_survives_its_json_round_trip(clock: FrozenClock, random: CountingRandom) -> None:
    vendor = make_vendor()
    device = make_device("rsa", vendor=vendor)
    session, _ = begin(device, clock, random, ek_roots=(vendor.root,))
    assert AttestationSession.from_json(session.to_json()) == session


def test_the_evidence_names_the_method_the_ek_and_the_ak(
    clock: FrozenClock, random: CountingRandom
) -> None:
    vendor = make_vendor()
    device = make_device("rsa", vendor=vendor)
    session, _ = begin(device, clock, random, ek_roots=(vendor.root,))
    evidence = session.evidence()
    assert evidence["method"] == "tpm-credential-activation"
    assert evidence["ek"] == device.urn
    assert evidence["ak_name"] == device.ak.name.hex()
    assert evidence["ek_certificate_verified"] is True
    assert evidence["ek_certificate_sha256"] is not None
    assert evidence["tpm"]["manufacturer"] == "id:53544D20"


# --- the inventory binds the TPM to a device --------------------------------------------


def test_an_unregistered_device_is_forbidden(clock: FrozenClock, random: CountingRandom) -> None:
    device = make_device("rsa")
    error = expect(
        Forbidden, "not registered", lambda: begin(device, clock, random, registered=None)
    )
    assert device.urn in error.detail


def test_a_disabled_device_is_forbidden(clock: FrozenClock, random: CountingRandom) -> None:
    device = make_device("ecc")
    expect(Forbidden, "disabled", lambda: begin(device, clock, random, registered="disabled"))


def test_a_device_registered_with_an_ek_certificate_must_present_that_ek(
    clock: FrozenClock, random: CountingRandom
) -> None:
    vendor = make_vendor()
    device = make_device("rsa")
    other = make_ek("rsa", slot=1)
    registered = Device(
        device.urn,
        ek_certificate=vendor.ek_certificate(other.public_key).public_bytes(Encoding.DER),
    )
    expect(
        Forbidden,
        "does not match the EK certificate registered",
        lambda: begin(device, clock, random, registered=registered, ek_roots=(vendor.root,)),
    )


def test_a_device_registered_with_its_ek_certificate_attests(
    clock: FrozenClock, random: CountingRandom
) -> None:
    vendor = make_vendor()
    device = make_device("ecc", vendor=vendor)
    assert device.ek.certificate is not None
    registered = Device(device.urn, ek_certificate=device.ek.certificate.public_bytes(Encoding.DER))
    session, _ = begin(device, clock, random, registered=registered, ek_roots=(vendor.root,))
    assert session.ek_certificate_verified


# --- EK certificates ---------------------------------------------------------------------


def test_an_ek_certificate_from_a_trusted_vendor_is_verified(
    clock: FrozenClock, random: CountingRandom
) -> None:
    vendor = make_vendor()
    device = make_device("rsa", vendor=vendor)
    session, _ = begin(device, clock, random, ek_roots=(vendor.root,))
    assert session.ek_certificate_verified
    assert device.ek.certificate is not None
    assert session.ek_certificate == device.ek.certificate.public_bytes(Encoding.DER)
    # The TPM attributes come from the verified certificate, not from the client's claims.
    assert session.tpm == TPMInfo("id:53544D20", "SW   TPM", "id:00010002")


def test_the_ek_can_be_given_by_its_certificate_alone(
    clock: FrozenClock, random: CountingRandom
) -> None:
    vendor = make_vendor()
    device = make_device("ecc", vendor=vendor)
    session, _ = begin(
        device, clock, random, body=device.attest_body(send_ek=False), ek_roots=(vendor.root,)
    )
    assert session.ek_urn == device.urn and session.ek_certificate_verified


def test_an_ek_certificate_from_an_untrusted_root_is_refused_by_default(
    clock: FrozenClock, random: CountingRandom
) -> None:
    trusted, untrusted = make_vendor("Trusted"), make_vendor("Untrusted", slot=1)
    device = make_device("rsa", vendor=untrusted)
    expect(
        Forbidden,
        "not trusted",
        lambda: begin(device, clock, random, ek_roots=(trusted.root,)),
    )


def test_no_configured_ek_roots_refuses_every_ek_certificate(
    clock: FrozenClock, random: CountingRandom
) -> None:
    device = make_device("rsa", vendor=make_vendor())
    expect(Forbidden, "no trusted roots", lambda: begin(device, clock, random))


def test_an_untrusted_ek_certificate_is_recorded_unverified_under_the_record_policy(
    clock: FrozenClock, random: CountingRandom
) -> None:
    trusted, untrusted = make_vendor("Trusted"), make_vendor("Untrusted", slot=1)
    device = make_device("rsa", vendor=untrusted)
    session, _ = begin(
        device,
        clock,
        random,
        ek_roots=(trusted.root,),
        unverifiable_ek_certificate=EKCertificatePolicy.RECORD,
    )
    assert not session.ek_certificate_verified
    assert device.ek.certificate is not None
    assert session.ek_certificate == device.ek.certificate.public_bytes(Encoding.DER)
    # Unverified certificates do not vouch for the TPM model: the client's tpmInfo is used.
    assert session.tpm == TPMInfo("id:53544D20", "SW   TPM", "id:00010002")
    assert session.evidence()["ek_certificate_verified"] is False


def test_an_expired_ek_certificate_is_not_trusted(
    clock: FrozenClock, random: CountingRandom
) -> None:
    vendor = make_vendor()
    ek = make_ek("rsa")
    expired = vendor.ek_certificate(
        ek.public_key,
        not_before=clock.now() - timedelta(days=30),
        not_after=clock.now() - timedelta(days=1),
    )
    device = attrs.evolve(make_device("rsa"), ek=ek.with_certificate(expired))
    expect(Forbidden, "expired", lambda: begin(device, clock, random, ek_roots=(vendor.root,)))


def test_an_ek_certificate_for_another_key_is_forbidden(
    clock: FrozenClock, random: CountingRandom
) -> None:
    vendor = make_vendor()
    device = make_device("rsa")
    someone_else = vendor.ek_certificate(make_ek("rsa", slot=1).public_key)
    body = device.attest_body(ek_certs=[someone_else])
    expect(
        Forbidden,
        "no EK certificate carries the EK's public key",
        lambda: begin(device, clock, random, body=body, ek_roots=(vendor.root,)),
    )


def test_the_matching_certificate_is_picked_among_several(
    clock: FrozenClock, random: CountingRandom
) -> None:
    vendor = make_vendor()
    device = make_device("ecc", vendor=vendor)
    assert device.ek.certificate is not None
    decoy = vendor.ek_certificate(make_ek("ecc", slot=1).public_key)
    body = device.attest_body(ek_certs=[decoy, device.ek.certificate])
    session, _ = begin(device, clock, random, body=body, ek_roots=(vendor.root,))
    assert session.ek_certificate == device.ek.certificate.public_bytes(Encoding.DER)


def test_require_ek_certificate_refuses_a_bare_ek(
    clock: FrozenClock, random: CountingRandom
) -> None:
    device = make_device("rsa")
    expect(
        Forbidden,
        "requires an EK certificate",
        lambda: begin(device, clock, random, require_ek_certificate=True),
    )


def test_require_ek_certificate_accepts_a_verified_one(
    clock: FrozenClock, random: CountingRandom
) -> None:
    vendor = make_vendor()
    device = make_device("rsa", vendor=vendor)
    session, _ = begin(device, clock, random, require_ek_certificate=True, ek_roots=(vendor.root,))
    assert session.ek_certificate_verified


# --- the AK --------------------------------------------------------------------------------


BAD_AKS: list[Any] = [
    pytest.param(
        {"attributes": AK_ATTRIBUTES & ~ObjectAttributes.FIXED_TPM}, "FIXED_TPM", id="no-fixedTPM"
    ),
    pytest.param(
        {"attributes": AK_ATTRIBUTES & ~ObjectAttributes.FIXED_PARENT},
        "FIXED_PARENT",
        id="no-fixedParent",
    ),
    pytest.param(
        {"attributes": AK_ATTRIBUTES & ~ObjectAttributes.SENSITIVE_DATA_ORIGIN},
        "SENSITIVE_DATA_ORIGIN",
        id="imported-key",
    ),
    pytest.param(
        {"attributes": AK_ATTRIBUTES & ~ObjectAttributes.RESTRICTED},
        "RESTRICTED",
        id="unrestricted",
    ),
    pytest.param(
        {"attributes": AK_ATTRIBUTES | ObjectAttributes.DECRYPT}, "decryption", id="decrypt"
    ),
    pytest.param({"name_alg": TPMAlg.SHA1}, "SHA1", id="sha1-nameAlg"),
    pytest.param({"signature_hash": TPMAlg.SHA1}, "SHA-1", id="sha1-signature"),
    pytest.param({"signer": "another key"}, "does not verify", id="signed-by-another-key"),
    pytest.param({"object_name": b"\x00\x0b" + bytes(32)}, "different object", id="other-object"),
    pytest.param({"creation_hash": bytes(32)}, "creationHash", id="other-creation-data"),
]


@pytest.mark.parametrize("ak_kind", ["ecc", "rsa"])
@pytest.mark.parametrize(("spoil", "match"), BAD_AKS)
def test_a_bad_ak_is_a_bad_request(
    spoil: dict[str, Any], match: str, ak_kind: str, clock: FrozenClock, random: CountingRandom
) -> None:
    if spoil.get("signer") == "another key":
        spoil = {"signer": ec_key(42) if ak_kind == "ecc" else rsa_key(42)}
    device = make_device("rsa", ak_kind, **spoil)
    error = expect(BadRequest, match, lambda: begin(device, clock, random))
    assert error.detail.startswith("attestation key rejected")


def test_an_rsa_ak_signature_from_an_ecc_key_is_a_bad_request(
    clock: FrozenClock, random: CountingRandom
) -> None:
    device = make_device("ecc", "rsa", signer=ec_key(43))
    expect(BadRequest, "attestation key rejected", lambda: begin(device, clock, random))


def test_an_ak_signed_by_the_ek_is_still_another_key(
    clock: FrozenClock, random: CountingRandom
) -> None:
    device = make_device("rsa", "rsa", signer=rsa_key(0))  # the EK's own key
    expect(BadRequest, "does not verify", lambda: begin(device, clock, random))


def test_sha1_aks_are_accepted_only_when_the_policy_allows_them(
    clock: FrozenClock, random: CountingRandom
) -> None:
    device = make_device("rsa", "ecc", name_alg=TPMAlg.SHA1)
    expect(BadRequest, "SHA1", lambda: begin(device, clock, random))
    session, challenge = begin(device, clock, random, allow_sha1=True)
    assert session.ak_name[:2] == TPMAlg.SHA1.to_bytes(2, "big")
    assert answer_challenge(session, device.recover(challenge.to_json()), clock.now()).state is (
        SessionState.ACTIVATED
    )


def test_device_checks_come_before_ak_checks(clock: FrozenClock, random: CountingRandom) -> None:
    """An unregistered device learns nothing about whether its AK would pass."""
    device = make_device("rsa", attributes=AK_ATTRIBUTES | ObjectAttributes.DECRYPT)
    expect(Forbidden, "not registered", lambda: begin(device, clock, random, registered=None))


# --- the answer -----------------------------------------------------------------------------


def test_an_answer_that_matches_no_session_is_unauthorized(clock: FrozenClock) -> None:
    expect(
        Unauthorized,
        "matches no pending attestation",
        lambda: answer_challenge(None, bytes(SECRET_BYTES), clock.now()),
    )


def test_a_wrong_secret_for_a_session_is_unauthorized(
    clock: FrozenClock, random: CountingRandom
) -> None:
    device = make_device("ecc")
    session, challenge = begin(device, clock, random)
    secret = device.recover(challenge.to_json())
    wrong = bytes(b ^ 1 for b in secret)
    expect(Unauthorized, "does not match", lambda: answer_challenge(session, wrong, clock.now()))


def test_the_secret_of_another_session_is_unauthorized(
    clock: FrozenClock, random: CountingRandom
) -> None:
    first, second = make_device("rsa"), make_device("ecc", slot=1)
    first_session, _ = begin(first, clock, random)
    _, second_challenge = begin(second, clock, random)
    second_secret = second.recover(second_challenge.to_json())
    expect(
        Unauthorized,
        "does not match",
        lambda: answer_challenge(first_session, second_secret, clock.now()),
    )


def test_an_answer_at_the_deadline_is_accepted(clock: FrozenClock, random: CountingRandom) -> None:
    device = make_device("ecc")
    session, challenge = begin(device, clock, random)
    clock.advance(LIFETIME)
    answered = answer_challenge(session, device.recover(challenge.to_json()), clock.now())
    assert answered.state is SessionState.ACTIVATED


def test_a_late_answer_is_unauthorized(clock: FrozenClock, random: CountingRandom) -> None:
    device = make_device("ecc")
    session, challenge = begin(device, clock, random)
    secret = device.recover(challenge.to_json())
    clock.advance(LIFETIME + timedelta(seconds=1))
    expect(Unauthorized, "expired", lambda: answer_challenge(session, secret, clock.now()))


def test_an_activated_session_cannot_be_answered_again(
    clock: FrozenClock, random: CountingRandom
) -> None:
    device = make_device("rsa")
    session, challenge = begin(device, clock, random)
    secret = device.recover(challenge.to_json())
    activated = answer_challenge(session, secret, clock.now())
    expect(Unauthorized, "activated", lambda: answer_challenge(activated, secret, clock.now()))


def test_an_expired_session_cannot_be_answered(clock: FrozenClock, random: CountingRandom) -> None:
    device = make_device("rsa")
    session, challenge = begin(device, clock, random)
    secret = device.recover(challenge.to_json())
    expired = attrs.evolve(session, state=SessionState.EXPIRED)
    expect(Unauthorized, "expired", lambda: answer_challenge(expired, secret, clock.now()))


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "secret",
        {},
        {"secret": None},
        {"secret": 12},
        {"secret": ["AAAA"]},
        {"secret": "not base64!"},
        {"secret": "QUJ"},
        {"secret": "A" * 129},
    ],
)
def test_a_malformed_answer_is_a_bad_request(body: Any) -> None:
    expect(BadRequest, None, lambda: parse_answer(body))


def test_parse_answer_decodes_standard_base64() -> None:
    secret = bytes(range(32))
    assert parse_answer({"secret": base64.b64encode(secret).decode()}) == secret


# --- secrecy --------------------------------------------------------------------------------


def _renderings(secret: bytes) -> list[str]:
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.b64encode(secret).decode().rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        repr(secret),
    ]


def test_no_error_ever_echoes_the_expected_secret(
    clock: FrozenClock, random: CountingRandom
) -> None:
    """keylime CVE-2023-38201: a refusal must not tell the client what it should have sent."""
    device = make_device("ecc")
    session, challenge = begin(device, clock, random)
    secret = device.recover(challenge.to_json())
    other_device = make_device("rsa", slot=1)
    other_session, other_challenge = begin(other_device, clock, random)
    other_secret = other_device.recover(other_challenge.to_json())

    messages: list[str] = []
    attempts: list[Callable[[], object]] = [
        lambda: answer_challenge(None, secret, clock.now()),
        lambda: answer_challenge(session, bytes(SECRET_BYTES), clock.now()),
        lambda: answer_challenge(session, other_secret, clock.now()),
        lambda: answer_challenge(other_session, secret, clock.now()),
        lambda: answer_challenge(session, secret[:-1], clock.now()),
        lambda: answer_challenge(session, secret, clock.now() + LIFETIME + timedelta(seconds=1)),
        lambda: answer_challenge(
            attrs.evolve(session, state=SessionState.ACTIVATED), secret, clock.now()
        ),
    ]
    for attempt in attempts:
        with pytest.raises(ProtocolError) as info:
            attempt()
        messages.append(info.value.detail)
        messages.append(str(info.value.to_json()))
        messages.append(repr(info.value))
    for text in messages:
        for rendering in [*_renderings(secret), *_renderings(other_secret)]:
            assert rendering not in text, text
        assert session.id not in text and other_session.id not in text


def test_a_session_id_does_not_reveal_its_secret(
    clock: FrozenClock, random: CountingRandom
) -> None:
    device = make_device("rsa")
    session, challenge = begin(device, clock, random)
    secret = device.recover(challenge.to_json())
    stored = str(session.to_json())
    for rendering in _renderings(secret):
        assert rendering not in stored
