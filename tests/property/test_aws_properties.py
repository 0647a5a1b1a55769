"""AWS instance identity evidence: any value in any member of the evidence, any fact of
a document AWS's key signed (so every check after the signature is reached), in every
form, and any bytes given to plugins.signed_data, give a ProtocolError from the AWS
provisioner and the signing pipeline after it, never another exception."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ProtocolError
from engine.pipeline import SignRequest, prepare_certificate
from engine.ports import CountingRandom, FrozenClock
from plugins.api import Credential
from plugins.minting import mint_identity_request
from plugins.signed_data import read_signed_data
from tests.plugins.test_aws_provisioner import (
    AUDIENCE,
    AWS,
    ISSUER,
    NOW,
    REAL,
    csr_for,
    ctx,
    make,
    new_key,
    real_pkcs7,
)
from tests.plugins.test_aws_signed_data import key_carrier, sign_cms

from .mutations import json_values, mutated

CLOUD = AWS()
DATA_DIR = Path(tempfile.mkdtemp(prefix="devid-aws-properties-"))
for _form in ("signature", "rsa2048", "pkcs7"):
    CLOUD.certificate_file(DATA_DIR, _form)
PROVISIONER = make(
    DATA_DIR,
    forms=["signature", "rsa2048", "pkcs7"],
    regions=["eu-west-1", "us-east-1"],
    max_instance_age="1h",
    allowed_names=["*.svc.example.com"],
)
KEY = new_key()
CSRS = (
    csr_for(KEY),
    csr_for(KEY, "i-0abc123def4567890", ("10.1.2.3",)),
    csr_for(KEY, "x.svc.example.com"),
    csr_for(new_key()),  # not the request's key
)
CLOCK = FrozenClock(NOW)

other = json_values(max_leaves=6)
odd_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    (
        "",
        " ",
        "eu-west-1\n",
        "i-0abc123def4567890\n",
        "123456789012",
        "10.1.2.3",
        "010.1.2.3",
        "2026-12-01T11:50:00Z",
        "2026-02-30T11:50:00Z",
        "AAAA",
        "x" * 300,
    )
)
base64_text = st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())
evidence = st.fixed_dictionaries(
    {},
    optional={
        "document": odd_text | st.just(CLOUD.document()) | other,
        "signature": odd_text | base64_text | st.just(REAL["signature"]) | other,
        "rsa2048": odd_text | base64_text | other,
        "pkcs7": odd_text | base64_text | st.just(real_pkcs7()) | other,
        "nonce": other,
    },
)
facts = st.fixed_dictionaries(
    {},
    optional={
        "accountId": odd_text | other,
        "instanceId": odd_text | other,
        "region": odd_text | st.sampled_from(("eu-west-1", "us-east-1", "ap-southeast-2")) | other,
        "privateIp": odd_text | other,
        "pendingTime": odd_text | other,
        "availabilityZone": odd_text | other,
        "instanceType": odd_text | other,
        "imageId": odd_text | other,
    },
)


def _attempt(member: Any) -> None:
    """Send *member* as the ``aws`` evidence to the provisioner, with every CSR, and any
    accepted authorization through the signing pipeline."""
    try:
        text = mint_identity_request(KEY, audience=AUDIENCE, cloud="aws", evidence=member, now=NOW)
    except (TypeError, ValueError):  # not JSON at all: no request can carry it
        return
    reading = PROVISIONER.read_credential(text)
    credential = Credential(
        text=text, provisioner="aws", reading=reading.reading if reading else None
    )
    for csr in CSRS:
        try:
            authorization = PROVISIONER.authorize_sign(credential, csr, ctx())
            prepared = prepare_certificate(
                SignRequest(csr=csr), authorization.policy, ISSUER, CLOCK
            )
            prepared.sign(CountingRandom(b"aws"))
        except ProtocolError:
            continue


@given(evidence)
def test_any_evidence(drawn: dict[str, Any]) -> None:
    _attempt(drawn)


@given(facts, st.sampled_from(("signature", "rsa2048", "pkcs7")))
def test_any_facts_aws_signed(drawn: dict[str, Any], form: str) -> None:
    try:
        document = json.dumps(drawn, indent=2, separators=(",", " : "))
    except ValueError:
        return
    region = drawn.get("region")
    signer = region if region in AWS.REGIONS else "eu-west-1"
    _attempt(CLOUD.evidence(form, document, region=signer))


@given(st.binary(max_size=600))
def test_any_bytes_to_read_signed_data(data: bytes) -> None:
    try:
        read_signed_data(data).verify(CLOUD.rsa["eu-west-1"].public_key())
    except ProtocolError:
        return


_KEY = CLOUD.dsa["eu-west-1"]
SIGNED = (
    sign_cms(CLOUD.document().encode(), _KEY, key_carrier(_KEY), digest="sha1", indefinite=True),
    sign_cms(
        CLOUD.document().encode(),
        CLOUD.rsa["eu-west-1"],
        key_carrier(CLOUD.rsa["eu-west-1"]),
        embed=(key_carrier(_KEY),),
    ),
)


@given(mutated(SIGNED))
def test_any_changed_signed_data(data: bytes) -> None:
    for key in (_KEY.public_key(), CLOUD.rsa["eu-west-1"].public_key()):
        try:
            signed = read_signed_data(data)
            signed.signer_certificate()
            signed.verify(key)
        except ProtocolError:
            continue


def test_the_valid_evidence_is_accepted() -> None:
    for form in ("signature", "rsa2048", "pkcs7"):
        text = mint_identity_request(
            KEY, audience=AUDIENCE, cloud="aws", evidence=CLOUD.evidence(form), now=NOW
        )
        reading = PROVISIONER.read_credential(text)
        assert reading is not None
        PROVISIONER.authorize_sign(reading, CSRS[0], ctx())
