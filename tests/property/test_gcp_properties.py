"""GCP instance identity tokens: any value in any claim the provisioner reads, in a token
Google's key signed (so every check after the signature is reached), and any token text,
give a ProtocolError from the GCP provisioner and the signing pipeline after it, never
another exception."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ProtocolError
from engine.pipeline import SignRequest, prepare_certificate
from engine.ports import CountingRandom, FrozenClock
from fuzz.targets.oidc import ISSUER
from hosts.testing.keys import StaticRemoteKeys
from tests.plugins.test_gcp_provisioner import NOW, Google, csr_for, ctx, make

from .mutations import json_values

KEYS = StaticRemoteKeys(discovery=False)
GOOGLE = Google(KEYS)
PROVISIONER = make(
    KEYS,
    zones=["europe-west1-b", "us-east1-c"],
    service_accounts=["app@prod-123456.iam.gserviceaccount.com"],
    max_instance_age="1h",
    allowed_names=["*.svc.example.com"],
)
CSRS = (
    csr_for(),
    csr_for("web-1", ("web-1.c.prod-123456.internal",)),
    csr_for("x.svc.example.com"),
)
CLOCK = FrozenClock(NOW)

other = json_values(max_leaves=6)
odd_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ("", " ", "web-1\n", "WEB-1", "a" * 64, "x" * 300, "prod-123456", "example.com:p", "-a")
)
numbers = st.integers() | st.floats(allow_nan=False) | st.sampled_from((0, -1, 10**20, 2**63))

instance_facts = st.fixed_dictionaries(
    {},
    optional={
        "instance_creation_timestamp": numbers | odd_text | other,
        "instance_id": odd_text | numbers | other,
        "instance_name": odd_text | other,
        "project_id": odd_text | other,
        "project_number": numbers | odd_text | other,
        "zone": odd_text | st.just("europe-west1-b") | other,
    },
)
claims = st.fixed_dictionaries(
    {},
    optional={
        "iss": odd_text | st.just("https://accounts.google.com") | other,
        "aud": odd_text | st.just("https://ca.example.com:8443/1.0/sign#gce") | other,
        "email": odd_text | other,
        "email_verified": st.sampled_from((True, False, "true", 1)) | other,
        "iat": numbers | odd_text | other,
        "exp": numbers | odd_text | other,
        "nbf": numbers | other,
        "google": st.builds(lambda facts: {"compute_engine": facts}, instance_facts) | other,
    },
)


def _attempt(token: str) -> None:
    try:
        reading = PROVISIONER.read_credential(token)
        if reading is None:
            return
        for csr in CSRS:
            try:
                authorization = PROVISIONER.authorize_sign(reading, csr, ctx())
                policy = authorization.policy
                assert policy is not None
                prepared = prepare_certificate(SignRequest(csr=csr), policy, ISSUER, CLOCK)
                prepared.sign(CountingRandom(b"gcp"))
            except ProtocolError:
                continue
    except ProtocolError:
        return


@given(claims)
def test_any_claims_google_signed(drawn: dict[str, Any]) -> None:
    _attempt(GOOGLE.token(drawn))


@given(instance_facts)
def test_any_instance_facts(facts: dict[str, Any]) -> None:
    _attempt(GOOGLE.token(instance=facts))


@given(st.text(max_size=300))
def test_any_token_text(text: str) -> None:
    _attempt(text)


def test_the_valid_token_is_accepted() -> None:
    reading = PROVISIONER.read_credential(GOOGLE.token())
    assert reading is not None
    PROVISIONER.authorize_sign(reading, CSRS[0], ctx(NOW + timedelta(seconds=1)))
