"""The loopback imitations of AWS's and Azure's instance metadata services
(``hosts.testing.metadata``) against what the clouds serve: IMDSv2's session token
handshake, the instance identity document and its three signed forms (checked with
cryptography and with ``openssl`` as a real peer, against the certificate files the
server writes), Azure's ``Metadata: true`` rule, managed identity tokens, the attested
document's nonce rules, signature and certificate chain; and the command line that runs
one in the foreground."""

from __future__ import annotations

import base64
import json
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa

from engine.errors import Unauthorized
from engine.jose import parse_compact, public_key_from_jwk
from hosts.testing.metadata import (
    AWS_IDENTITY_PATH,
    AWS_TOKEN_PATH,
    AZURE_ATTESTED_PATH,
    AZURE_TOKEN_PATH,
    AWSInstance,
    AWSMetadataServer,
    AzureInstance,
    AzureMetadataServer,
)
from plugins.signed_data import read_signed_data

TTL = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN = "X-aws-ec2-metadata-token"
LAUNCHED = datetime(2026, 3, 1, 9, 30, 15, tzinfo=UTC)
EC2 = AWSInstance(
    account_id="210987654321",
    region="eu-west-1",
    instance_id="i-0fedcba9876543210",
    instance_type="m7g.large",
    image_id="ami-0123456789abcdef0",
    private_ip="10.1.2.3",
    architecture="arm64",
    pending_time=LAUNCHED,
)
VM = AzureInstance(
    tenant_id="11111111-2222-3333-4444-555555555555",
    subscription_id="66666666-7777-8888-9999-000000000000",
    resource_group="Web-Group",
    vm_name="web-7",
    vm_id="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    principal_id="12121212-3434-5656-7878-909090909090",
    client_id="abababab-cdcd-efef-0101-232323232323",
)
RESOURCE = "api://devid-ca"


class Clock:
    """A clock the test moves."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC))


@pytest.fixture
def aws(clock: Clock) -> Iterator[AWSMetadataServer]:
    with AWSMetadataServer(EC2, now=clock) as server:
        yield server


@pytest.fixture
def azure(clock: Clock) -> Iterator[AzureMetadataServer]:
    with AzureMetadataServer(VM, now=clock) as server:
        yield server


def put_token(server: AWSMetadataServer, ttl: str | None = "60", **headers: str) -> httpx.Response:
    sent = dict(headers)
    if ttl is not None:
        sent[TTL] = ttl
    return httpx.put(server.url + AWS_TOKEN_PATH, headers=sent, timeout=5)


def get(server: AWSMetadataServer, what: str, token: str | None, **headers: str) -> httpx.Response:
    sent = dict(headers)
    if token is not None:
        sent[TOKEN] = token
    return httpx.get(server.url + AWS_IDENTITY_PATH + what, headers=sent, timeout=5)


def pem_entries(path: Path) -> list[tuple[str, x509.Certificate]]:
    """The (region, certificate) pairs of an AWS provisioner's certificates file."""
    text = path.read_text()
    pattern = (
        r"# certificate for (\S+)\n(-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n)"
    )
    entries = re.findall(pattern, text, flags=re.S)
    assert "".join(f"# certificate for {r}\n{p}" for r, p in entries) == text
    return [(region, x509.load_pem_x509_certificate(pem.encode())) for region, pem in entries]


def openssl_verify(args: list[str], der_or_pem: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["openssl", *args], input=der_or_pem, capture_output=True, timeout=30, check=False
    )


# --- AWS: IMDSv2 ----------------------------------------------------------------------------


def test_the_session_token_handshake(aws: AWSMetadataServer, clock: Clock) -> None:
    answer = put_token(aws, "60")
    assert answer.status_code == 200 and answer.headers["Server"] == "EC2ws"
    token = answer.text
    assert re.fullmatch(r"[A-Za-z0-9+/=]{40,}", token)
    assert aws.token_ttls == [60]
    assert get(aws, "document", token).text == aws.document()
    # The token lives its TTL, on the server's clock.
    clock.moment += timedelta(seconds=59)
    assert get(aws, "document", token).status_code == 200
    clock.moment += timedelta(seconds=1)
    assert get(aws, "document", token).status_code == 401
    assert aws.requests == [
        ("PUT", AWS_TOKEN_PATH, 200),
        ("GET", AWS_IDENTITY_PATH + "document", 200),
        ("GET", AWS_IDENTITY_PATH + "document", 200),
        ("GET", AWS_IDENTITY_PATH + "document", 401),
    ]


@pytest.mark.parametrize("ttl", [None, "0", "21601", "-1", "1.5", "sixty", ""])
def test_a_token_needs_a_ttl_of_one_second_to_six_hours(aws: AWSMetadataServer, ttl: str) -> None:
    answer = put_token(aws, ttl)
    assert answer.status_code == 400
    assert "400 - Bad Request" in answer.text
    assert aws.token_ttls == []


def test_the_longest_and_shortest_ttls(aws: AWSMetadataServer) -> None:
    assert put_token(aws, "1").status_code == 200
    assert put_token(aws, "21600").status_code == 200
    assert aws.token_ttls == [1, 21600]


@pytest.mark.parametrize("form", ["document", "signature", "pkcs7", "rsa2048"])
def test_every_get_needs_a_valid_token(aws: AWSMetadataServer, form: str) -> None:
    assert get(aws, form, None).status_code == 401
    assert get(aws, form, "").status_code == 401
    unknown = get(aws, form, "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB")
    assert unknown.status_code == 401 and "401 - Unauthorized" in unknown.text
    assert get(aws, form, put_token(aws).text).status_code == 200


def test_what_went_through_a_proxy_is_refused(aws: AWSMetadataServer) -> None:
    assert put_token(aws, **{"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    token = put_token(aws).text
    assert get(aws, "document", token, **{"X-Forwarded-For": "203.0.113.9"}).status_code == 403


def test_methods_and_paths(aws: AWSMetadataServer) -> None:
    token = put_token(aws).text
    assert httpx.get(aws.url + AWS_TOKEN_PATH, timeout=5).status_code == 405
    assert get(aws, "nothing", token).status_code == 404
    assert get(aws, "document/", token).status_code == 404
    put = httpx.put(aws.url + AWS_IDENTITY_PATH + "document", headers={TOKEN: token}, timeout=5)
    assert put.status_code == 405
    assert aws.session_token(10) != aws.session_token(10)


# --- AWS: the document and its signed forms -------------------------------------------------


def test_the_document_is_laid_out_as_ec2s(aws: AWSMetadataServer) -> None:
    token = put_token(aws).text
    text = get(aws, "document", token).text
    assert text == (
        "{\n"
        '  "accountId" : "210987654321",\n'
        '  "architecture" : "arm64",\n'
        '  "availabilityZone" : "eu-west-1a",\n'
        '  "billingProducts" : null,\n'
        '  "devpayProductCodes" : null,\n'
        '  "marketplaceProductCodes" : null,\n'
        '  "imageId" : "ami-0123456789abcdef0",\n'
        '  "instanceId" : "i-0fedcba9876543210",\n'
        '  "instanceType" : "m7g.large",\n'
        '  "kernelId" : null,\n'
        '  "pendingTime" : "2026-03-01T09:30:15Z",\n'
        '  "privateIp" : "10.1.2.3",\n'
        '  "ramdiskId" : null,\n'
        '  "region" : "eu-west-1",\n'
        '  "version" : "2017-09-30"\n'
        "}"
    )


def test_without_a_launch_time_the_instance_launched_a_minute_before_the_server(
    clock: Clock,
) -> None:
    with AWSMetadataServer(AWSInstance(availability_zone="us-east-1d"), now=clock) as server:
        facts = json.loads(server.document())
        clock.moment += timedelta(hours=2)
        assert json.loads(server.document()) == facts  # the same document while it serves
    assert facts["pendingTime"] == "2026-06-01T11:59:00Z"
    assert facts["availabilityZone"] == "us-east-1d"


def test_the_instance_can_change_while_it_serves(aws: AWSMetadataServer) -> None:
    token = put_token(aws).text
    aws.instance = AWSInstance(instance_id="i-0000000000000000a", pending_time=LAUNCHED)
    assert json.loads(get(aws, "document", token).text)["instanceId"] == "i-0000000000000000a"


def test_the_signature_form_is_rsa_sha256_in_lines_of_64(
    aws: AWSMetadataServer, tmp_path: Path
) -> None:
    token = put_token(aws).text
    document = get(aws, "document", token).text
    served = get(aws, "signature", token).text
    lines = served.split("\n")
    assert all(len(line) == 64 for line in lines[:-1]) and 0 < len(lines[-1]) <= 64
    signature = base64.b64decode("".join(lines), validate=True)
    ((region, certificate),) = pem_entries(aws.certificate_file("signature", tmp_path))
    assert region == "eu-west-1"
    key = certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    key.verify(signature, document.encode(), padding.PKCS1v15(), hashes.SHA256())
    # Self-signed in AWS's name, as AWS publishes its certificates.
    assert certificate.issuer == certificate.subject
    assert "Amazon Web Services LLC" in certificate.subject.rfc4514_string()


@pytest.mark.parametrize(
    ("form", "digest", "signature_algorithm", "key_type", "size"),
    [
        ("pkcs7", "sha1", "sha1_dsa", dsa.DSAPublicKey, 1024),
        ("rsa2048", "sha256", "rsassa_pkcs1v15", rsa.RSAPublicKey, 2048),
    ],
)
def test_the_pkcs7_forms_verify_with_openssl_and_the_certificate_file(
    aws: AWSMetadataServer,
    tmp_path: Path,
    form: str,
    digest: str,
    signature_algorithm: str,
    key_type: type,
    size: int,
) -> None:
    token = put_token(aws).text
    document = get(aws, "document", token).text
    served = get(aws, form, token).text
    assert "BEGIN" not in served
    lines = served.split("\n")
    assert len(lines) > 1 and all(len(line) == 64 for line in lines[:-1])
    der = base64.b64decode("".join(lines), validate=True)
    certificate_file = aws.certificate_file(form, tmp_path)
    ((_, certificate),) = pem_entries(certificate_file)
    public = certificate.public_key()
    assert isinstance(public, key_type) and public.key_size == size  # type: ignore[attr-defined]

    verified = openssl_verify(
        ["cms", "-verify", "-noverify", "-inform", "DER", "-certfile", str(certificate_file)], der
    )
    assert verified.returncode == 0, verified.stderr.decode()
    assert verified.stdout == document.encode()
    # AWS's own instructions: the PEM-armoured form with `openssl smime`.
    armoured = f"-----BEGIN PKCS7-----\n{served}\n-----END PKCS7-----\n".encode()
    smime = ["smime", "-verify", "-noverify", "-inform", "PEM", "-certfile", str(certificate_file)]
    assert openssl_verify(smime, armoured).stdout == document.encode()
    # Another form's certificate does not verify it.
    other = aws.certificate_file("signature", tmp_path / "other")
    wrong = openssl_verify(
        ["cms", "-verify", "-noverify", "-inform", "DER", "-certfile", str(other)], der
    )
    assert wrong.returncode != 0

    # The CA's reader agrees.
    content = read_signed_data(der)
    assert content.content == document.encode() and content.certificates == ()
    content.verify(public)
    with pytest.raises(Unauthorized):
        content.verify(aws.certificate("signature").public_key())

    signed = asn1_cms.ContentInfo.load(der)["content"]
    assert signed["encap_content_info"]["content"].native == document.encode()
    assert not signed["certificates"]  # no certificate embedded
    (signer,) = signed["signer_infos"]
    assert signer["digest_algorithm"]["algorithm"].native == digest
    assert signer["signature_algorithm"]["algorithm"].native == signature_algorithm
    assert [a["type"].native for a in signer["signed_attrs"]] == [
        "content_type",
        "signing_time",
        "message_digest",
    ]
    times = [a for a in signer["signed_attrs"] if a["type"].native == "signing_time"]
    assert times[0]["values"][0].native == datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_a_certificate_file_can_name_several_regions(
    aws: AWSMetadataServer, tmp_path: Path
) -> None:
    path = aws.certificate_file("rsa2048", tmp_path, regions=["us-east-1", "eu-west-1"])
    assert path == tmp_path / "aws-rsa2048.pem"
    entries = pem_entries(path)
    assert [region for region, _ in entries] == ["us-east-1", "eu-west-1"]
    assert entries[0][1] == entries[1][1] == aws.certificate("rsa2048")


def test_a_document_of_the_tests_own_is_signed_in_any_form(aws: AWSMetadataServer) -> None:
    text = aws.document().replace("210987654321", "999999999999")
    signature = base64.b64decode("".join(aws.sign("signature", text).split()))
    key = aws.certificate("signature").public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, text.encode(), padding.PKCS1v15(), hashes.SHA256())
    assert set(aws.evidence("pkcs7")) == {"pkcs7"}
    assert set(aws.evidence("rsa2048", with_document=True)) == {"document", "rsa2048"}
    assert set(aws.evidence("signature")) == {"document", "signature"}
    with pytest.raises(ValueError, match="no form 'pkcs1'"):
        aws.sign("pkcs1")


# --- Azure ----------------------------------------------------------------------------------


def azure_get(
    server: AzureMetadataServer, path: str, params: dict[str, str], *, metadata: str | None = "true"
) -> httpx.Response:
    headers = {"Metadata": metadata} if metadata is not None else {}
    return httpx.get(server.url + path, params=params, headers=headers, timeout=5)


TOKEN_PARAMS = {"api-version": "2018-02-01", "resource": RESOURCE}
NONCE = "0123456789"


@pytest.mark.parametrize("path", [AZURE_TOKEN_PATH, AZURE_ATTESTED_PATH])
@pytest.mark.parametrize("metadata", [None, "false", "True"])
def test_azure_wants_the_metadata_header(
    azure: AzureMetadataServer, path: str, metadata: str | None
) -> None:
    params = {**TOKEN_PARAMS, "nonce": NONCE}
    answer = azure_get(azure, path, params, metadata=metadata)
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_request",
        "error_description": "Required metadata header not specified",
    }
    assert azure.resources == [] and azure.nonces == []


def test_azure_wants_an_api_version_and_a_resource(azure: AzureMetadataServer) -> None:
    for path in (AZURE_TOKEN_PATH, AZURE_ATTESTED_PATH):
        answer = azure_get(azure, path, {"resource": RESOURCE})
        assert answer.status_code == 400
        assert answer.json()["error"].startswith("Bad request. api-version was not specified")
    answer = azure_get(azure, AZURE_TOKEN_PATH, {"api-version": "2018-02-01"})
    assert answer.status_code == 400
    assert answer.json()["error_description"] == "Required audience parameter not specified"
    assert azure_get(azure, "/metadata/instance", TOKEN_PARAMS).status_code == 404
    forwarded = httpx.get(
        azure.url + AZURE_TOKEN_PATH,
        params=TOKEN_PARAMS,
        headers={"Metadata": "true", "X-Forwarded-For": "203.0.113.9"},
        timeout=5,
    )
    assert forwarded.status_code == 400


def test_the_managed_identity_token(azure: AzureMetadataServer, clock: Clock) -> None:
    answer = azure_get(azure, AZURE_TOKEN_PATH, TOKEN_PARAMS)
    assert answer.status_code == 200
    body = answer.json()
    issued = int(clock.moment.timestamp())
    assert {k: v for k, v in body.items() if k != "access_token"} == {
        "client_id": VM.client_id,
        "expires_in": "86400",
        "expires_on": str(issued + 86400),
        "ext_expires_in": "86400",
        "not_before": str(issued),
        "resource": RESOURCE,
        "token_type": "Bearer",
    }
    assert azure.resources == [RESOURCE]
    jws = parse_compact(body["access_token"])
    assert jws.alg == "RS256" and jws.header["kid"] == azure.kid
    keys = httpx.get(azure.jwks_url, timeout=5).json()["keys"]  # no Metadata header needed
    (jwk,) = [k for k in keys if k["kid"] == azure.kid]
    claims = jws.verify(public_key_from_jwk(jwk))
    tenant = "11111111-2222-3333-4444-555555555555"
    assert claims["aud"] == RESOURCE
    assert claims["iss"] == f"https://sts.windows.net/{tenant}/" == azure.issuer()
    assert claims["tid"] == tenant
    assert claims["oid"] == claims["sub"] == VM.principal_id
    assert claims["appid"] == VM.client_id
    assert claims["idtyp"] == "app"
    assert claims["iat"] == claims["nbf"] == issued
    assert claims["exp"] == issued + 86400
    assert claims["xms_mirid"] == (
        "/subscriptions/66666666-7777-8888-9999-000000000000/resourcegroups/Web-Group"
        "/providers/Microsoft.Compute/virtualMachines/web-7"
    )
    changed = parse_compact(azure.token(RESOURCE, tid="other", xms_mirid=None)).claims()
    assert changed["tid"] == "other" and "xms_mirid" not in changed


@pytest.mark.parametrize("nonce", ["123", "12345678901", "abcdefghij", "01234 6789", ""])
def test_a_nonce_is_ten_digits(azure: AzureMetadataServer, nonce: str) -> None:
    answer = azure_get(azure, AZURE_ATTESTED_PATH, {"api-version": "2020-09-01", "nonce": nonce})
    assert answer.status_code == 400
    assert answer.json() == {"error": "Bad request. Nonce must be 10 digits"}
    assert azure.nonces == []


def attested(azure: AzureMetadataServer, nonce: str | None) -> bytes:
    params = {"api-version": "2020-09-01", **({"nonce": nonce} if nonce is not None else {})}
    answer = azure_get(azure, AZURE_ATTESTED_PATH, params)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"encoding", "signature"} and body["encoding"] == "pkcs7"
    assert "\n" not in body["signature"]
    return base64.b64decode(body["signature"], validate=True)


def content_of(der: bytes) -> bytes:
    content = asn1_cms.ContentInfo.load(der)["content"]["encap_content_info"]["content"].native
    assert isinstance(content, bytes)
    return content


def test_the_attested_document_carries_the_nonce(azure: AzureMetadataServer) -> None:
    content = content_of(attested(azure, NONCE))
    assert content == (
        b'{"licenseType":"","nonce":"0123456789","plan":{"name":"","product":"","publisher":""},'
        b'"sku":"22_04-lts-gen2","subscriptionId":"66666666-7777-8888-9999-000000000000",'
        b'"timeStamp":{"createdOn":"06/01/26 12:00:00 -0000","expiresOn":"06/01/26 18:00:00'
        b' -0000"},"vmId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}'
    )
    assert azure.nonces == [NONCE]


def test_without_a_nonce_the_time_is_the_nonce(azure: AzureMetadataServer, clock: Clock) -> None:
    clock.moment = datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)
    facts = json.loads(content_of(attested(azure, None)))
    assert facts["nonce"] == "20261231-235958"
    assert facts["timeStamp"] == {
        "createdOn": "12/31/26 23:59:58 -0000",
        "expiresOn": "01/01/27 05:59:58 -0000",
    }
    assert azure.nonces == [None]


def test_the_attested_document_is_signed_as_azure_signs_it(
    azure: AzureMetadataServer, tmp_path: Path
) -> None:
    der = attested(azure, NONCE)
    signed = asn1_cms.ContentInfo.load(der)["content"]
    (embedded,) = signed["certificates"]
    signer_certificate = x509.load_der_x509_certificate(embedded.chosen.dump())
    assert signer_certificate == azure.signer
    assert signer_certificate.subject.rfc4514_string() == "CN=metadata.azure.com"
    san = signer_certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["metadata.azure.com"]
    (signer,) = signed["signer_infos"]
    assert signer["signed_attrs"].native is None  # no signed attributes
    assert signer["digest_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.1.11"
    assert [a["algorithm"].dotted for a in signed["digest_algorithms"]] == ["1.2.840.113549.1.1.11"]
    assert signer["signature_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.1.1"
    key = signer_certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    content = read_signed_data(der)  # the CA's reader agrees
    assert content.signer_certificate() == azure.signer
    content.verify(key)
    key.verify(signer["signature"].native, content_of(der), padding.PKCS1v15(), hashes.SHA256())
    # The chain: root -> intermediate -> signer, in the files the server writes.
    roots = x509.load_pem_x509_certificates(azure.roots_file(tmp_path).read_bytes())
    intermediates = x509.load_pem_x509_certificates(azure.intermediates_file(tmp_path).read_bytes())
    assert roots == [azure.root] and intermediates == [azure.intermediate]
    signer_certificate.verify_directly_issued_by(azure.intermediate)
    azure.intermediate.verify_directly_issued_by(azure.root)
    azure.root.verify_directly_issued_by(azure.root)
    # openssl, as a real peer, builds and checks the chain to the root.
    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(
        (tmp_path / "azure-roots.pem").read_bytes()
        + (tmp_path / "azure-intermediates.pem").read_bytes()
    )
    verify = ["cms", "-verify", "-inform", "DER", "-purpose", "any", "-CAfile"]
    verified = openssl_verify([*verify, str(trusted)], der)
    assert verified.returncode == 0, verified.stderr.decode()
    assert verified.stdout == content_of(der)
    # Without the intermediate there is no chain.
    assert openssl_verify([*verify, str(tmp_path / "azure-roots.pem")], der).returncode != 0


def test_the_signer_name_and_content_can_be_chosen(clock: Clock) -> None:
    server = AzureMetadataServer(VM, now=clock, signer_name="eastus.metadata.azure.com")
    try:
        der = base64.b64decode(server.attested(content=b'{"nonce":"x"}'))
    finally:
        server.stop()
    assert content_of(der) == b'{"nonce":"x"}'
    san = server.signer.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["eastus.metadata.azure.com"]


# --- python -m hosts.testing.metadata -------------------------------------------------------


def run_foreground(*args: str, lines: int) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``python -m hosts.testing.metadata ARGS``; the process and the first *lines*
    lines it prints (each read within 60 s)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hosts.testing.metadata", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    printed: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            printed.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    try:
        return process, [printed.get(timeout=60) for _ in range(lines)]
    except queue.Empty:
        stop(process)
        raise


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=30)


def test_the_command_line_serves_aws_and_prints_the_certificate_files(tmp_path: Path) -> None:
    process, lines = run_foreground(
        "--cloud", "aws", "--out", str(tmp_path), "--account-id", "111122223333", lines=4
    )
    try:
        assert lines[0].startswith("metadata server: http://127.0.0.1:")
        url = lines[0].split(": ", 1)[1]
        assert lines[1:] == [
            f"{form} certificate: {tmp_path / f'aws-{form}.pem'}"
            for form in ("signature", "pkcs7", "rsa2048")
        ]
        token = httpx.put(url + AWS_TOKEN_PATH, headers={TTL: "5"}, timeout=5).text
        document = httpx.get(
            url + AWS_IDENTITY_PATH + "document", headers={TOKEN: token}, timeout=5
        )
        assert json.loads(document.text)["accountId"] == "111122223333"
    finally:
        stop(process)
    assert pem_entries(tmp_path / "aws-pkcs7.pem")[0][0] == "us-east-1"


def test_the_command_line_serves_azure_and_prints_its_files(tmp_path: Path) -> None:
    process, lines = run_foreground("--cloud", "azure", "--out", str(tmp_path), lines=5)
    try:
        url = lines[0].split(": ", 1)[1]
        assert lines[1:] == [
            f"JWK set:         {url}/common/discovery/keys",
            f"token issuer:    https://sts.windows.net/{AzureInstance().tenant_id}/",
            f"roots:           {tmp_path / 'azure-roots.pem'}",
            f"intermediates:   {tmp_path / 'azure-intermediates.pem'}",
        ]
        keys = httpx.get(url + "/common/discovery/keys", timeout=5).json()["keys"]
        assert len(keys) == 1
    finally:
        stop(process)
    assert len(x509.load_pem_x509_certificates((tmp_path / "azure-roots.pem").read_bytes())) == 1
