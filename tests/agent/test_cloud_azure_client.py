"""The client's half of the Azure provisioner: the managed identity's access token and the
attested document fetched from Azure's metadata service (``agent.cloud``), against the
loopback imitation (``hosts.testing.metadata``) and against servers that answer wrongly,
slowly or not at all; and the instance identity request built from the CA's view, its
attested document bound to the key by the nonce."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from asn1crypto import cms as asn1_cms
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.cloud import (
    AZURE_ATTESTED_PATH,
    AZURE_METADATA_ENV,
    AZURE_METADATA_URL,
    AZURE_TOKEN_PATH,
    MAX_ANSWER_BYTES,
    CloudError,
    azure_identity_evidence,
    azure_metadata_url,
    instance_credential,
)
from engine.jose import parse_compact
from hosts.testing.metadata import AzureInstance, AzureMetadataServer
from plugins.identity_request import read_identity_request
from plugins.minting import IDENTITY_REQUEST_TYPE, instance_nonce
from tests.hosts.cloud_scripted import (
    Respond,
    answering,
    dripping,
    nothing_listening,
    reply,
    silent,
)

RESOURCE = "api://devid-ca"
NONCE = "4242424242"
CA_URL = "https://ca.example.com:8443"
AUDIENCE = "https://ca.example.com:8443/1.0/sign#azure"
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
JSON = {"Content-Type": "application/json"}
TOKEN_ROUTE = "GET " + AZURE_TOKEN_PATH
ATTESTED_ROUTE = "GET " + AZURE_ATTESTED_PATH
GOOD_TOKEN = reply(200, json.dumps({"access_token": "a.b.c"}).encode(), JSON)


@pytest.fixture
def metadata() -> Iterator[AzureMetadataServer]:
    with AzureMetadataServer(AzureInstance(vm_name="web-9")) as server:
        yield server


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AZURE_METADATA_ENV, raising=False)


def attested_content(signature: str) -> dict[str, object]:
    der = base64.b64decode(signature)
    content = asn1_cms.ContentInfo.load(der)["content"]["encap_content_info"]["content"].native
    facts = json.loads(content)
    assert isinstance(facts, dict)
    return facts


# --- the evidence -------------------------------------------------------------------------


def test_the_token_and_the_attested_document(metadata: AzureMetadataServer) -> None:
    evidence = azure_identity_evidence(RESOURCE, NONCE, metadata.url)
    assert set(evidence) == {"access_token", "attested"}
    claims = parse_compact(evidence["access_token"]).claims()
    assert claims["aud"] == RESOURCE and claims["xms_mirid"].endswith("/web-9")
    facts = attested_content(evidence["attested"])
    assert facts["nonce"] == NONCE and facts["vmId"] == metadata.instance.vm_id
    assert metadata.resources == [RESOURCE] and metadata.nonces == [NONCE]


def test_without_a_nonce_only_the_token_is_fetched(metadata: AzureMetadataServer) -> None:
    evidence = azure_identity_evidence(RESOURCE, None, metadata.url)
    assert set(evidence) == {"access_token"}
    assert metadata.nonces == []


def test_the_metadata_url_comes_from_the_option_the_environment_or_azures(
    monkeypatch: pytest.MonkeyPatch, metadata: AzureMetadataServer
) -> None:
    assert azure_metadata_url() == AZURE_METADATA_URL == "http://169.254.169.254"
    monkeypatch.setenv(AZURE_METADATA_ENV, metadata.url)
    assert azure_metadata_url() == metadata.url
    assert azure_metadata_url("https://127.0.0.1:8/") == "https://127.0.0.1:8"
    assert set(azure_identity_evidence(RESOURCE, None)) == {"access_token"}


def test_not_on_azure() -> None:
    with nothing_listening() as url, pytest.raises(CloudError) as caught:
        azure_identity_evidence(RESOURCE, NONCE, url)
    assert str(caught.value).startswith(
        f"not on Azure: the metadata server at {url} does not answer"
    )
    assert "pass --metadata-url or set $DEVID_AZURE_METADATA_URL for another" in str(caught.value)


def test_a_silent_service_is_bounded() -> None:
    with silent() as url, pytest.raises(CloudError) as caught:
        azure_identity_evidence(RESOURCE, NONCE, url, timeout=0.2)
    assert str(caught.value) == (
        f"not on Azure: the metadata server at {url} does not answer (no answer within 0.2 s;"
        " pass --metadata-url or set $DEVID_AZURE_METADATA_URL for another)"
    )


def test_a_dripping_answer_is_bounded_in_all() -> None:
    with answering({TOKEN_ROUTE: dripping(10_000, 0.02)}) as url, pytest.raises(CloudError) as e:
        azure_identity_evidence(RESOURCE, NONCE, url, timeout=0.2)
    assert str(e.value).startswith(f"not on Azure: the metadata server at {url} does not answer")


def test_a_vm_without_a_managed_identity() -> None:
    refusal = {"error": "invalid_request", "error_description": "Identity not found"}
    routes = {TOKEN_ROUTE: reply(400, json.dumps(refusal).encode(), JSON)}
    with answering(routes) as url, pytest.raises(CloudError) as caught:
        azure_identity_evidence(RESOURCE, NONCE, url)
    assert str(caught.value) == (
        f"the metadata server at {url} refused the managed identity's access token (400:"
        " Identity not found)"
    )


def test_the_service_refusing_the_nonce(metadata: AzureMetadataServer) -> None:
    with pytest.raises(CloudError) as caught:
        azure_identity_evidence(RESOURCE, "12345", metadata.url)
    assert str(caught.value) == (
        f"the metadata server at {metadata.url} refused the attested document (400: Bad"
        " request. Nonce must be 10 digits)"
    )


def answers(attested: bytes) -> dict[str, Respond]:
    return {TOKEN_ROUTE: GOOD_TOKEN, ATTESTED_ROUTE: reply(200, attested, JSON)}


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({TOKEN_ROUTE: reply(200, b"<html>portal</html>")}, "not Azure's JSON for the managed"),
        ({TOKEN_ROUTE: reply(200, b"[1, 2]", JSON)}, "not Azure's JSON for the managed"),
        ({TOKEN_ROUTE: reply(200, b"{}", JSON)}, "answered no access_token"),
        ({TOKEN_ROUTE: reply(200, b'{"access_token": 7}', JSON)}, "answered no access_token"),
        (
            {TOKEN_ROUTE: reply(200, b'{"access_token": "not a jwt"}', JSON)},
            "answered something that is not a JWT",
        ),
        (
            {TOKEN_ROUTE: reply(200, b'{"a": "' + b"x" * MAX_ANSWER_BYTES + b'"}', JSON)},
            f"the managed identity's access token from URL is longer than {MAX_ANSWER_BYTES}",
        ),
        ({TOKEN_ROUTE: GOOD_TOKEN}, "refused the attested document (404: Not Found)"),
        (answers(b'{"signature": "MIIB"}'), "an attested document that is not base64 PKCS#7"),
        (
            answers(b'{"encoding": "json", "signature": "MIIB"}'),
            "an attested document that is not base64 PKCS#7",
        ),
        (
            answers(b'{"encoding": "pkcs7", "signature": "%%%"}'),
            "an attested document that is not base64 PKCS#7",
        ),
        (
            answers(b'{"encoding": "pkcs7", "signature": ""}'),
            "an attested document that is not base64 PKCS#7",
        ),
        (answers(b"not json"), "not Azure's JSON for the attested document"),
    ],
    ids=[
        "token-html",
        "token-list",
        "token-missing",
        "token-number",
        "token-not-jwt",
        "token-huge",
        "attested-404",
        "attested-no-encoding",
        "attested-json",
        "attested-not-base64",
        "attested-empty",
        "attested-not-json",
    ],
)
def test_wrong_answers_give_clear_errors(routes: dict[str, Respond], message: str) -> None:
    with answering(routes) as url, pytest.raises(CloudError) as caught:
        azure_identity_evidence(RESOURCE, NONCE, url)
    assert message.replace("URL", url) in str(caught.value)
    assert url in str(caught.value)


# --- the instance identity request --------------------------------------------------------


def view(*, attested: bool, resource: object = RESOURCE) -> dict[str, object]:
    return {
        "type": "Azure",
        "name": "azure",
        "cloud": "azure",
        "resource": resource,
        "attestedDocument": attested,
    }


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()],
    ids=["P-384", "Ed25519"],
)
def test_the_attested_document_is_bound_to_the_key_and_the_provisioner(
    metadata: AzureMetadataServer, key: ec.EllipticCurvePrivateKey
) -> None:
    text = instance_credential(view(attested=True), CA_URL, key, metadata.url, now=NOW)
    jws = parse_compact(text)
    assert jws.header["typ"] == IDENTITY_REQUEST_TYPE
    claims = jws.verify(key.public_key())
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 300
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    nonce = instance_nonce(spki, AUDIENCE)
    assert metadata.nonces == [nonce]
    assert attested_content(claims["azure"]["attested"])["nonce"] == nonce
    assert parse_compact(claims["azure"]["access_token"]).claims()["aud"] == RESOURCE
    credential = read_identity_request(text, "azure")
    assert credential is not None and credential.provisioner == "azure"


def test_without_the_attested_document_only_the_token_is_sent(
    metadata: AzureMetadataServer,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    claims = parse_compact(
        instance_credential(view(attested=False), CA_URL, key, metadata.url, now=NOW)
    ).claims()
    assert set(claims["azure"]) == {"access_token"}
    assert metadata.nonces == [] and metadata.resources == [RESOURCE]


@pytest.mark.parametrize("resource", [None, "", 7])
def test_a_view_without_a_resource_is_refused(resource: object) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(CloudError) as caught:
        instance_credential(view(attested=True, resource=resource), CA_URL, key)
    assert str(caught.value) == "the CA's view of the Azure provisioner 'azure' names no resource"
