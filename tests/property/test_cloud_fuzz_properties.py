"""Cloud instance identity, through the ``cloud`` fuzz target: any fact of an EC2
document AWS's (fixture) key signed, any bytes and mutations of the SignedData an
instance sends, any content of an attested document Azure's (fixture) metadata service
signed, any claim of a managed-identity or GCP token the (fixture) provider key signed,
any evidence member and any credential text give a ProtocolError from the AWS, Azure
and GCP provisioners, the signing pipeline after them and plugins.signed_data, never
another exception.

The first tests check the target's footing: its fixtures are valid at the time it
verifies at, and its base inputs pass every check (so what the properties change is
what gets refused, not an earlier check that refuses anyway).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from engine.der import read_tlv
from fuzz.targets import cloud
from plugins.api import Credential, Provisioner, TokenUse

from .mutations import corpus_inputs, json_values, mutated, mutated_tree, seeds

other = json_values(max_leaves=6)
ANY_CHARACTER = st.characters(codec=None, exclude_categories=())
odd_text = st.text(ANY_CHARACTER, max_size=40) | st.sampled_from(
    ("", " ", "\x00", "us-east-1\n", "a" * 300, "x" * 5000)
)
NOW = int(cloud.NOW.timestamp())


def _input(form: int, value: Any) -> bytes:
    return bytes([form]) + json.dumps(value).encode()


def _authorizations(text: str) -> list[tuple[Provisioner, Any]]:
    """Each CSR's authorization of *text* by the provisioner it addresses (or None)."""
    found: list[tuple[Provisioner, Any]] = []
    for cls in cloud.TYPES:
        credential = cls.read_credential(text)
        if credential is None:
            continue
        provisioner = cloud.PROVISIONERS[credential.provisioner]
        assert isinstance(credential, Credential) and isinstance(provisioner, cls)
        for csr in (cloud.CSRS[0], cloud.CSRS[3]):
            authorization = provisioner.authorize_sign(credential, csr, cloud.CONTEXT)
            cloud._issue(provisioner, credential, csr)
            found.append((provisioner, authorization))
        return found
    raise AssertionError("no cloud type reads the credential")


# --- the target's footing --------------------------------------------------------------------


def test_the_fixture_certificates_are_valid_when_the_target_verifies() -> None:
    for name in ("azure-roots.pem", "azure-intermediates.pem", "azure-signer.pem"):
        for certificate in x509.load_pem_x509_certificates((cloud.FIXTURES / name).read_bytes()):
            assert certificate.not_valid_before_utc < cloud.NOW < certificate.not_valid_after_utc
    for form in ("signature", "rsa2048", "pkcs7"):
        text = (cloud.FIXTURES / f"aws-{form}.pem").read_text()
        assert text.startswith("# certificate for us-east-1\n")


def test_the_base_inputs_of_every_form_get_certificates() -> None:
    document = cloud.ec2_layout(cloud.BASE_FACTS)
    requests = [
        cloud.identity_request(
            "aws", {"document": document, "signature": cloud.aws_signature(document)}
        ),
        cloud.identity_request(
            "azure", {"access_token": cloud.ACCESS_TOKEN, "attested": cloud.ATTESTED}
        ),
        cloud.token(cloud.BASE_GCP_CLAIMS),
    ]
    for form in ("rsa2048", "pkcs7"):
        der = cloud.aws_signed_data(form, document.encode())
        requests.append(cloud.identity_request("aws", {form: cloud._base64_lines(der)}))
    for text in requests:
        assert _authorizations(text)


def test_trust_on_first_use_is_returned_not_recorded() -> None:
    """Each authorization names its instance for trust on first use; the target records
    nothing, so the same input is authorized again."""
    text = cloud.identity_request(
        "azure", {"access_token": cloud.ACCESS_TOKEN, "attested": cloud.ATTESTED}
    )
    for _ in range(2):
        for provisioner, authorization in _authorizations(text):
            assert isinstance(authorization.token, TokenUse)
            assert authorization.token.provisioner == provisioner.name
            assert authorization.token.token_id == f"instance:{cloud.AZURE.vm_id}"


def test_every_seed_runs() -> None:
    for data in seeds("cloud"):
        cloud.test_one_input(data)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        (
            "aws",
            {
                "accounts": [cloud.AWS.account_id],
                "forms": ["signature", "rsa2048", "pkcs7"],
                "certificates": {
                    "signature": "aws-signature.pem",
                    "rsa2048": "aws-rsa2048.pem",
                    "pkcs7": "aws-pkcs7.pem",
                },
                "max_instance_age": "1h",
                "trust_on_first_use": False,
            },
        ),
        (
            "azure",
            {
                "tenant_id": cloud.AZURE.tenant_id,
                "resource": cloud.RESOURCE,
                "roots": ["azure-roots.pem"],
                "intermediates": ["azure-intermediates.pem"],
                "trust_on_first_use": False,
            },
        ),
        (
            "azure",
            {
                "tenant_id": cloud.AZURE.tenant_id,
                "resource": cloud.RESOURCE,
                "attested_document": False,
                "trust_on_first_use": False,
            },
        ),
        (
            "azure",
            {
                "tenant_id": cloud.AZURE.tenant_id,
                "resource": cloud.RESOURCE,
                "attested_document": False,
            },
        ),
    ],
)
def test_the_corpus_through_other_configurations(
    name: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without trust on first use (one use per document or token, remembered until it
    expires) and without the attested document, every input of the corpus still gives
    a ProtocolError or a certificate."""
    cls = type(cloud.PROVISIONERS[name])
    configured = {**options, "allowed_names": ["*.svc.example.com"]}
    provisioner = cls.from_config(name, configured, cloud._ENV)
    monkeypatch.setitem(cloud.PROVISIONERS, name, provisioner)
    for data in corpus_inputs("cloud"):
        cloud.test_one_input(data)
    if name == "aws":
        document = cloud.ec2_layout(cloud.BASE_FACTS)
        evidence = {"document": document, "signature": cloud.aws_signature(document)}
    else:
        evidence = {"access_token": cloud.ACCESS_TOKEN, "attested": cloud.ATTESTED}
    expected = "instance:" if options.get("trust_on_first_use", True) else "sha256:"
    for _, authorization in _authorizations(cloud.identity_request(name, evidence)):
        assert authorization.token.token_id.startswith(expected)


# --- any bytes, any mutation of the corpus ---------------------------------------------------


@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    cloud.test_one_input(data)


@given(mutated(corpus_inputs("cloud")))
def test_byte_mutations_of_the_corpus(data: bytes) -> None:
    cloud.test_one_input(data)


# --- AWS --------------------------------------------------------------------------------------

aws_times = st.sampled_from(
    ("2025-05-31T23:55:00Z", "2025-05-31T22:00:00Z", "2025-06-01T01:00:00Z", "2025-02-30T00:00:00Z")
) | st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))
FACTS = st.fixed_dictionaries(
    {},
    optional={
        "accountId": st.sampled_from(("123456789012", "210987654321", "12345678901"))
        | odd_text
        | other,
        "instanceId": st.sampled_from(("i-0a1b2c3d4e5f67890", "i-0123", "i-" + "f" * 18))
        | odd_text
        | other,
        "region": st.sampled_from(("us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1"))
        | odd_text
        | other,
        "privateIp": st.sampled_from(("10.0.0.1", "010.0.0.1", "::1", "10.0.0.256"))
        | odd_text
        | other,
        "pendingTime": aws_times | odd_text | other,
        "availabilityZone": odd_text | other,
        "instanceType": odd_text | other,
        "imageId": odd_text | other,
    },
)


@given(FACTS)
def test_any_facts_aws_signed(facts: dict[str, Any]) -> None:
    cloud.test_one_input(_input(cloud.AWS_FACTS, facts))


@given(mutated_tree(cloud.BASE_FACTS, json_values()))
def test_any_value_in_any_member_of_a_valid_document(facts: Any) -> None:
    cloud.test_one_input(_input(cloud.AWS_FACTS, facts))


def _signed_data_seeds() -> list[bytes]:
    return [s for s in seeds("cloud") if s[0] % cloud.FORMS == cloud.AWS_SIGNED_DATA]


@given(mutated(_signed_data_seeds()))
def test_any_change_of_aws_signed_data(data: bytes) -> None:
    cloud.test_one_input(data)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "document": odd_text | st.just(cloud.ec2_layout(cloud.BASE_FACTS)) | other,
            "signature": odd_text
            | st.just(cloud.aws_signature(cloud.ec2_layout(cloud.BASE_FACTS)))
            | other,
            "rsa2048": odd_text | st.binary(max_size=300).map(cloud._base64_lines) | other,
            "pkcs7": odd_text | st.binary(max_size=300).map(cloud._base64_lines) | other,
            "nonce": other,
        },
    )
)
def test_any_aws_evidence(evidence: dict[str, Any]) -> None:
    cloud.test_one_input(bytes([cloud.EVIDENCE, 0]) + json.dumps(evidence).encode())


# --- Azure ------------------------------------------------------------------------------------

azure_times = st.sampled_from(
    (
        "06/01/25 00:00:00 -0000",
        "06/01/25 06:00:00 -0000",
        "05/31/25 18:00:00 +2359",
        "02/30/25 00:00:00 -0000",
        "99/99/99 99:99:99 -9999",
    )
)
ATTESTED = st.fixed_dictionaries(
    {},
    optional={
        "nonce": st.sampled_from((cloud.NONCE, "0123456789", "")) | odd_text | other,
        "subscriptionId": st.just(cloud.AZURE.subscription_id.upper()) | odd_text | other,
        "vmId": st.just(cloud.AZURE.vm_id.upper()) | odd_text | other,
        "timeStamp": st.fixed_dictionaries(
            {},
            optional={
                "createdOn": azure_times | odd_text | other,
                "expiresOn": azure_times | odd_text | other,
            },
        )
        | other,
    },
)
mirids = st.sampled_from(
    (
        cloud.AZURE.resource_id,
        cloud.AZURE.resource_id.upper(),
        cloud.AZURE.resource_id + "/",
        cloud.AZURE.resource_id.replace("my-group", "Other(RG)"),
        cloud.AZURE.resource_id.replace("virtualMachines", "virtualMachineScaleSets"),
    )
) | st.builds(lambda name: cloud.AZURE.resource_id.replace("web-1", name), odd_text)
numbers = st.integers() | st.floats(allow_nan=False) | st.sampled_from((0, -1, NOW, 10**20))
AZURE_CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "iss": odd_text | other,
        "aud": st.just(cloud.RESOURCE) | odd_text | other,
        "tid": st.just(cloud.AZURE.tenant_id.upper()) | odd_text | other,
        "iat": numbers | other,
        "nbf": numbers | other,
        "exp": numbers | other,
        "xms_mirid": mirids | other,
    },
)


@given(ATTESTED)
def test_any_document_azure_signed(content: dict[str, Any]) -> None:
    cloud.test_one_input(_input(cloud.AZURE_DOCUMENT, content))


@given(mutated_tree(cloud.BASE_ATTESTED, json_values()))
def test_any_value_in_any_member_of_a_valid_attested_document(content: Any) -> None:
    cloud.test_one_input(_input(cloud.AZURE_DOCUMENT, content))


@given(AZURE_CLAIMS)
def test_any_claims_entra_signed(claims: dict[str, Any]) -> None:
    cloud.test_one_input(_input(cloud.AZURE_CLAIMS, claims))


@given(mutated_tree(cloud.BASE_AZURE_CLAIMS, json_values()))
def test_any_value_in_any_member_of_a_valid_token(claims: Any) -> None:
    cloud.test_one_input(_input(cloud.AZURE_CLAIMS, claims))


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "access_token": st.just(cloud.ACCESS_TOKEN) | odd_text | other,
            "attested": st.just(cloud.ATTESTED)
            | st.binary(max_size=300).map(cloud._base64_lines)
            | odd_text
            | other,
        },
    )
)
def test_any_azure_evidence(evidence: dict[str, Any]) -> None:
    cloud.test_one_input(bytes([cloud.EVIDENCE, 1]) + json.dumps(evidence).encode())


def _attested_der() -> bytes:
    import base64

    return base64.b64decode(cloud.ATTESTED)


@given(mutated([_attested_der()]))
def test_any_change_of_an_attested_document(der: bytes) -> None:
    cloud.read_signed(der)
    evidence = {"access_token": cloud.ACCESS_TOKEN, "attested": cloud._base64_lines(der)}
    cloud.test_one_input(bytes([cloud.EVIDENCE, 1]) + json.dumps(evidence).encode())


# --- GCP and any credential ---------------------------------------------------------------------


@given(mutated_tree(cloud.BASE_GCP_CLAIMS, json_values()))
def test_any_value_in_any_member_of_a_valid_gcp_token(claims: Any) -> None:
    cloud.test_one_input(_input(cloud.GCP_CLAIMS, claims))


@given(st.sampled_from(("aws", "azure")), json_values())
def test_any_evidence_member(member: str, value: Any) -> None:
    cloud.test_one_input(bytes([cloud.EVIDENCE, member == "azure"]) + json.dumps(value).encode())


@given(st.lists(st.text(st.sampled_from("AZaz09-_=+/.é"), max_size=60), min_size=1, max_size=4))
def test_any_credential_text(parts: list[str]) -> None:
    cloud.test_one_input(bytes([cloud.TOKEN]) + ".".join(parts).encode())


@pytest.mark.parametrize("form", ["rsa2048", "pkcs7"])
def test_every_truncation_of_a_signed_data_seed(form: str) -> None:
    der = cloud.aws_signed_data(form, cloud.ec2_layout(cloud.BASE_FACTS).encode())
    _, _, end = read_tlv(der)
    assert end == len(der)
    for size in range(0, len(der), 7):
        cloud.test_one_input(bytes([cloud.AWS_SIGNED_DATA, form == "pkcs7"]) + der[:size])
