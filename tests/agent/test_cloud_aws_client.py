"""The client's half of the AWS provisioner: the instance identity document and its signed
form fetched from EC2's metadata service through IMDSv2 (``agent.cloud``), against the
loopback imitation (``hosts.testing.metadata``) and against servers that answer wrongly,
slowly or not at all; and the instance identity request built from the CA's view."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from asn1crypto import cms as asn1_cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa

from agent.cloud import (
    AWS_IDENTITY_PATH,
    AWS_METADATA_ENV,
    AWS_METADATA_URL,
    AWS_TOKEN_PATH,
    MAX_ANSWER_BYTES,
    CloudError,
    aws_identity_evidence,
    aws_metadata_url,
    instance_credential,
)
from engine.jose import parse_compact
from hosts.testing.metadata import AWSInstance, AWSMetadataServer, GCPMetadataServer
from plugins.identity_request import read_identity_request
from plugins.minting import IDENTITY_REQUEST_TYPE
from tests.hosts.cloud_scripted import (
    Respond,
    answering,
    dripping,
    nothing_listening,
    reply,
    silent,
)

INSTANCE = AWSInstance(account_id="123456789012", region="eu-central-1")
CA_URL = "https://ca.example.com:8443"
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TOKEN = reply(200, b"AQAEAFakeSessionToken0123456789abcdefABCDEF==")
DOCUMENT_PATH = "GET " + AWS_IDENTITY_PATH + "document"


@pytest.fixture
def metadata() -> Iterator[AWSMetadataServer]:
    with AWSMetadataServer(INSTANCE) as server:
        yield server


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AWS_METADATA_ENV, raising=False)


# --- the evidence -------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["signature", "pkcs7", "rsa2048"])
def test_the_document_and_the_form_come_through_an_imdsv2_session(
    metadata: AWSMetadataServer, form: str
) -> None:
    evidence = aws_identity_evidence(form, metadata.url)
    document = {"document": metadata.document()} if form == "signature" else {}
    assert evidence == {**document, form: evidence[form]}
    assert "\n" in evidence[form]  # as served, in lines of 64
    assert metadata.token_ttls == [60]
    assert metadata.requests == [
        ("PUT", AWS_TOKEN_PATH, 200),
        *[("GET", AWS_IDENTITY_PATH + "document", 200) for _ in document],
        ("GET", AWS_IDENTITY_PATH + form, 200),
    ]


def test_a_signed_data_form_carries_the_document(metadata: AWSMetadataServer) -> None:
    evidence = aws_identity_evidence("rsa2048", metadata.url)
    der = base64.b64decode("".join(evidence["rsa2048"].split()), validate=True)
    content = asn1_cms.ContentInfo.load(der)["content"]["encap_content_info"]["content"]
    assert content.native == metadata.document().encode()


def test_the_signature_verifies_over_the_document(metadata: AWSMetadataServer) -> None:
    evidence = aws_identity_evidence("signature", metadata.url)
    key = metadata.certificate("signature").public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    signature = base64.b64decode("".join(evidence["signature"].split()))
    key.verify(signature, evidence["document"].encode(), padding.PKCS1v15(), hashes.SHA256())


def test_the_metadata_url_comes_from_the_option_the_environment_or_ec2(
    monkeypatch: pytest.MonkeyPatch, metadata: AWSMetadataServer
) -> None:
    assert aws_metadata_url() == AWS_METADATA_URL == "http://169.254.169.254"
    monkeypatch.setenv(AWS_METADATA_ENV, metadata.url + "/")
    assert aws_metadata_url() == metadata.url
    assert aws_metadata_url("http://127.0.0.1:8/") == "http://127.0.0.1:8"
    assert aws_identity_evidence("signature")["document"] == metadata.document()
    with pytest.raises(CloudError, match="'file:///x' is not an http:// or https:// URL"):
        aws_metadata_url("file:///x")


def test_an_unknown_form_is_refused_before_asking() -> None:
    with pytest.raises(CloudError) as caught:
        aws_identity_evidence("pkcs1", "http://127.0.0.1:9")
    assert str(caught.value) == (
        "devid cannot fetch the AWS document's form 'pkcs1' (it knows signature, pkcs7, rsa2048)"
    )


def test_not_on_aws() -> None:
    with nothing_listening() as url, pytest.raises(CloudError) as caught:
        aws_identity_evidence("signature", url)
    assert str(caught.value).startswith(f"not on AWS: the metadata server at {url} does not answer")
    assert "pass --metadata-url or set $DEVID_AWS_METADATA_URL for another" in str(caught.value)


def test_a_silent_service_is_bounded() -> None:
    with silent() as url, pytest.raises(CloudError) as caught:
        aws_identity_evidence("signature", url, timeout=0.2)
    assert str(caught.value) == (
        f"not on AWS: the metadata server at {url} does not answer (no answer within 0.2 s;"
        " pass --metadata-url or set $DEVID_AWS_METADATA_URL for another)"
    )


def test_a_dripping_answer_is_bounded_in_all() -> None:
    """Bytes that each come within the read timeout, but never all of them."""
    routes = {"PUT " + AWS_TOKEN_PATH: TOKEN, DOCUMENT_PATH: dripping(10_000, 0.02)}
    with answering(routes) as url, pytest.raises(CloudError) as caught:
        aws_identity_evidence("signature", url, timeout=0.2)
    assert str(caught.value).startswith(f"not on AWS: the metadata server at {url} does not")


def test_another_clouds_metadata_server_is_not_aws() -> None:
    with GCPMetadataServer() as gcp, pytest.raises(CloudError) as caught:
        aws_identity_evidence("signature", gcp.url)
    assert str(caught.value) == (
        f"the metadata server at {gcp.url} refused an IMDSv2 session token (405: Method Not"
        " Allowed)"
    )


def signed_form(body: bytes) -> dict[str, Respond]:
    return {
        "PUT " + AWS_TOKEN_PATH: TOKEN,
        DOCUMENT_PATH: reply(200, AWSInstance().document(NOW).encode()),
        "GET " + AWS_IDENTITY_PATH + "signature": reply(200, body),
    }


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        (
            {"PUT " + AWS_TOKEN_PATH: reply(403, b"IMDS is disabled")},
            "refused an IMDSv2 session token (403: IMDS is disabled)",
        ),
        ({"PUT " + AWS_TOKEN_PATH: reply(200, b"")}, "not an IMDSv2 session token"),
        (
            {"PUT " + AWS_TOKEN_PATH: reply(200, b"<html>captive portal</html>")},
            "not an IMDSv2 session token",
        ),
        ({"PUT " + AWS_TOKEN_PATH: reply(200, b"x" * 2000)}, "not an IMDSv2 session token"),
        (
            {"PUT " + AWS_TOKEN_PATH: TOKEN, DOCUMENT_PATH: reply(401, b"")},
            "refused the instance identity document (401)",
        ),
        (
            {"PUT " + AWS_TOKEN_PATH: TOKEN, DOCUMENT_PATH: reply(200, b"<html>hello</html>")},
            "answered something that is not an instance identity document",
        ),
        (
            {"PUT " + AWS_TOKEN_PATH: TOKEN, DOCUMENT_PATH: reply(200, b'{"instanceId": 7}')},
            "answered something that is not an instance identity document",
        ),
        (
            {"PUT " + AWS_TOKEN_PATH: TOKEN, DOCUMENT_PATH: reply(200, b"\xff{}")},
            "answered an instance identity document that is not text",
        ),
        (
            {
                "PUT " + AWS_TOKEN_PATH: TOKEN,
                DOCUMENT_PATH: reply(200, b" " * (MAX_ANSWER_BYTES + 1)),
            },
            f"the instance identity document from URL is longer than {MAX_ANSWER_BYTES} bytes",
        ),
        (signed_form(b"not base64!"), "answered a signature that is not base64"),
        (signed_form(b""), "answered a signature that is not base64"),
        (
            {
                "PUT " + AWS_TOKEN_PATH: TOKEN,
                DOCUMENT_PATH: reply(200, AWSInstance().document(NOW).encode()),
            },
            "refused the instance identity signature (404: Not Found)",
        ),
    ],
    ids=[
        "token-refused",
        "token-empty",
        "token-html",
        "token-huge",
        "document-401",
        "document-html",
        "document-fields",
        "document-binary",
        "document-huge",
        "signature-garbage",
        "signature-empty",
        "signature-missing",
    ],
)
def test_wrong_answers_give_clear_errors(routes: dict[str, Respond], message: str) -> None:
    with answering(routes) as url, pytest.raises(CloudError) as caught:
        aws_identity_evidence("signature", url)
    assert message.replace("URL", url) in str(caught.value)
    assert url in str(caught.value)


def test_a_redirect_is_not_followed() -> None:
    moved = reply(307, b"", {"Location": "http://203.0.113.1/latest/api/token"})
    with answering({"PUT " + AWS_TOKEN_PATH: moved}) as url, pytest.raises(CloudError) as caught:
        aws_identity_evidence("signature", url)
    assert "refused an IMDSv2 session token (307)" in str(caught.value)


# --- the instance identity request --------------------------------------------------------


def view(*forms: str) -> dict[str, object]:
    return {"type": "AWS", "name": "aws", "cloud": "aws", "forms": list(forms)}


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["P-256", "Ed25519", "RSA"],
)
def test_the_request_carries_the_first_form_the_ca_lists(
    metadata: AWSMetadataServer, key: ec.EllipticCurvePrivateKey
) -> None:
    text = instance_credential(
        view("rsa2048", "signature"), CA_URL + "/", key, metadata.url, now=NOW
    )
    jws = parse_compact(text)
    assert jws.header["typ"] == IDENTITY_REQUEST_TYPE
    claims = jws.verify(key.public_key())
    assert claims["aud"] == "https://ca.example.com:8443/1.0/sign#aws"
    assert claims["iat"] == int(NOW.timestamp()) and claims["exp"] == claims["iat"] + 300
    assert set(claims["aws"]) == {"rsa2048"}
    credential = read_identity_request(text, "aws")
    assert credential is not None and credential.provisioner == "aws"


def test_forms_devid_does_not_know_are_passed_over(metadata: AWSMetadataServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    text = instance_credential(view("rsa4096", "pkcs7"), CA_URL, key, metadata.url, now=NOW)
    assert set(parse_compact(text).claims()["aws"]) == {"pkcs7"}


@pytest.mark.parametrize(
    ("forms", "listed"), [((), "none"), (("rsa4096",), "rsa4096")], ids=["none", "unknown"]
)
def test_a_view_without_a_form_is_refused(forms: tuple[str, ...], listed: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(CloudError) as caught:
        instance_credential(view(*forms), CA_URL, key, "http://127.0.0.1:9")
    assert str(caught.value) == (
        "the CA's AWS provisioner 'aws' accepts no form of the instance identity document devid"
        f" can fetch (it lists {listed}; devid fetches signature, pkcs7, rsa2048): its"
        " certificates need configuring on the CA"
    )
    broken = {"type": "AWS", "name": "aws", "forms": "signature"}
    with pytest.raises(CloudError, match="it lists none"):
        instance_credential(broken, CA_URL, key, "http://127.0.0.1:9")


def test_a_key_that_cannot_sign_a_request_is_refused(metadata: AWSMetadataServer) -> None:
    key = dsa.generate_private_key(key_size=1024)
    with pytest.raises(CloudError, match=r"cannot be signed with a .*DSA.* key"):
        instance_credential(view("signature"), CA_URL, key, metadata.url)
    assert metadata.requests == []  # refused before asking


def test_a_view_of_another_type_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(CloudError, match="provisioner 'corp' of type 'OIDC' is not a cloud's"):
        instance_credential({"type": "OIDC", "name": "corp"}, CA_URL, key)
