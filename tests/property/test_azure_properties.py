"""Azure instance identity requests: any value in any claim the provisioner reads, in a
managed-identity token Entra's key signed; any content of an attested document the
metadata service's certificate signed (so every check after both signatures is
reached); any evidence and any request text: each gives a ProtocolError from the Azure
provisioner and the signing pipeline after it, never another exception."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ProtocolError
from engine.pipeline import SignRequest, prepare_certificate
from engine.ports import CountingRandom, FrozenClock
from fuzz.targets.oidc import ISSUER
from hosts.testing.keys import StaticRemoteKeys
from plugins.api import NamePatterns
from plugins.azure import AzureProvisioner
from tests.plugins.test_azure_provisioner import (
    MIRID,
    NOW,
    RESOURCE,
    SUBSCRIPTION,
    TENANT,
    VM_ID,
    Azure,
    Device,
    ctx,
    document_time,
)

from .mutations import json_values

KEYS = StaticRemoteKeys(discovery=False)
AZURE = Azure(KEYS)
PROVISIONER = AzureProvisioner(
    name="azure",
    issuer="tls",
    tenant_id=TENANT,
    resource=RESOURCE,
    remote_keys=KEYS,
    subscriptions=frozenset({SUBSCRIPTION}),
    resource_groups=frozenset({"prod-rg"}),
    roots=[AZURE.pki.root],
    intermediates=[AZURE.pki.intermediate],
    allowed_names=NamePatterns.parse(["*.svc.example.com"], "allowed_names"),
)
DEVICES = (
    Device(),
    Device("web-1", (f"urn:uuid:{VM_ID}",)),
    Device("x.svc.example.com"),
)
CLOCK = FrozenClock(NOW)

other = json_values(max_leaves=6)
odd_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ("", " ", "web-1\n", "a" * 64, "x" * 300, SUBSCRIPTION.upper(), "00000000-0000-0000-0000-0")
)
numbers = st.integers() | st.floats(allow_nan=False) | st.sampled_from((0, -1, 10**20, 2**63))
mirids = st.sampled_from(
    (
        MIRID,
        MIRID.upper(),
        MIRID + "/",
        MIRID.replace("virtualMachines", "virtualMachineScaleSets"),
        MIRID.replace("Prod-RG", "Other(RG)"),
        MIRID.replace("web-1", "w" * 64),
        MIRID.replace("web-1", "w" * 65),
    )
) | st.builds(lambda name: MIRID.replace("web-1", name), odd_text)
times = st.sampled_from(
    (
        document_time(NOW),
        "01/01/70 00:00:00 -0000",
        "12/31/69 23:59:59 +2359",
        "02/30/26 12:00:00 -0000",
        "00/00/00 00:00:00 -0000",
        "99/99/99 99:99:99 -9999",
    )
)

claims = st.fixed_dictionaries(
    {},
    optional={
        "iss": odd_text | st.just(f"https://sts.windows.net/{TENANT}/") | other,
        "aud": odd_text | st.just(RESOURCE) | other,
        "tid": odd_text | st.just(TENANT.upper()) | other,
        "iat": numbers | odd_text | other,
        "nbf": numbers | odd_text | other,
        "exp": numbers | odd_text | other,
        "xms_mirid": mirids | other,
    },
)
stamps = st.fixed_dictionaries(
    {}, optional={"createdOn": times | odd_text | other, "expiresOn": times | odd_text | other}
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "nonce": odd_text | numbers | other,
        "subscriptionId": odd_text | st.just(SUBSCRIPTION.upper()) | other,
        "vmId": odd_text | st.just(VM_ID.upper()) | other,
        "timeStamp": stamps | other,
        "plan": other,
    },
)


def _attempt(request: str) -> None:
    try:
        reading = PROVISIONER.read_credential(request)
        if reading is None:
            return
        for device in DEVICES:
            try:
                authorization = PROVISIONER.authorize_sign(reading, device.csr, ctx())
                policy = authorization.policy
                assert policy is not None
                prepared = prepare_certificate(SignRequest(csr=device.csr), policy, ISSUER, CLOCK)
                prepared.sign(CountingRandom(b"azure"))
            except ProtocolError:
                continue
    except ProtocolError:
        return


@given(claims)
def test_any_claims_entra_signed(drawn: dict[str, Any]) -> None:
    _attempt(AZURE.request(DEVICES[0], token=AZURE.access_token(drawn)))


@given(documents, st.booleans())
def test_any_document_the_metadata_service_signed(drawn: dict[str, Any], keep: bool) -> None:
    device = DEVICES[0]
    content = AZURE.document(device.nonce()) if keep else {}
    content.update(drawn)
    attested = AZURE.attested(None, content=json.dumps(content).encode())
    _attempt(AZURE.request(device, attested=attested))


@given(st.binary(max_size=300) | st.builds(lambda v: json.dumps(v).encode(), other))
def test_any_content_the_metadata_service_signed(content: bytes) -> None:
    device = DEVICES[1]
    _attempt(AZURE.request(device, attested=AZURE.attested(None, content=content)))


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "access_token": odd_text | other | st.just(AZURE.access_token()),
            "attested": odd_text
            | other
            | st.builds(lambda b: base64.b64encode(b).decode(), st.binary(max_size=200)),
        },
    )
)
def test_any_evidence(evidence: dict[str, Any]) -> None:
    _attempt(AZURE.request(DEVICES[2], evidence=evidence))


@given(st.text(max_size=300))
def test_any_request_text(text: str) -> None:
    _attempt(text)


def test_the_valid_request_is_accepted() -> None:
    device = DEVICES[0]
    reading = PROVISIONER.read_credential(AZURE.request(device))
    assert reading is not None
    PROVISIONER.authorize_sign(reading, device.csr, ctx())
