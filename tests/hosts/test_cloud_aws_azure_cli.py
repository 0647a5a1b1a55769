"""EC2 instances and Azure virtual machines get certificates end to end, as an operator and
an instance run the commands (subprocesses): ``devid ca certificate SUBJECT CRT KEY
--provisioner NAME --metadata-url URL`` fetches the instance's identity from the loopback
imitation of its cloud's metadata service (``hosts.testing.metadata``: IMDSv2 for AWS,
the managed identity token and attested document for Azure), wraps it in an instance
identity request signed by the new key, and asks ``devid serve`` on both hosts, whose
provisioners trust the servers' certificate files and JWK set. Trust on first use: a
second certificate is refused, ``devid cloud forget`` lifts that once, and the instance
renews over mTLS. Then what an anonymous client can send to ``POST /1.0/sign`` itself:
replays, documents of other accounts, tenants and subscriptions, stale instances, forged
documents, tokens for another resource, documents for another key and requests for
another CA are each refused with a clear 4xx and a JSON body, on both hosts.

Every test uses instance IDs of its own: the CA (one per host) remembers each instance's
first certificate for the whole module.
"""

from __future__ import annotations

import itertools
import shutil
import ssl
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from agent.caclient import make_csr
from hosts.testing.metadata import (
    AWSInstance,
    AWSMetadataServer,
    AzureInstance,
    AzureMetadataServer,
)
from hosts.testing.servers import HOSTS, DevidServer, clean_env, devid_serve, run_devid
from plugins.minting import instance_nonce, mint_identity_request
from tests.conftest import CA
from tests.hosts.cloud_scripted import nothing_listening

ACCOUNT = "123456789012"
TENANT = "0b8e4c2a-6f13-4d59-9a7e-2c1d3e5f7a90"
SUBSCRIPTION = "9d7c5b3a-1e2f-4a6b-8c9d-0e1f2a3b4c5d"
RESOURCE = "api://devid-ca"
#: The regions the provisioners have AWS's (the server's) certificates for.
REGIONS = ("us-east-1", "eu-west-1")
#: The bound on one command, in seconds.
COMMAND_TIMEOUT = 90.0
_ids = itertools.count(0x0A00000000000001)


def ec2(**facts: Any) -> AWSInstance:
    """An instance of the admitted account with an ID no other test uses."""
    return AWSInstance(
        **{
            "account_id": ACCOUNT,
            "region": "us-east-1",
            "instance_id": f"i-{next(_ids):017x}",
            "private_ip": "172.31.16.5",
            **facts,
        }
    )


def vm(**facts: Any) -> AzureInstance:
    """A virtual machine of the admitted tenant and subscription with a vmId of its own."""
    return AzureInstance(
        **{
            "tenant_id": TENANT,
            "subscription_id": SUBSCRIPTION,
            "resource_group": "Web-Group",
            "vm_name": "web-1",
            "vm_id": str(uuid.uuid4()),
            **facts,
        }
    )


@attrs.frozen
class Clouds:
    aws: AWSMetadataServer
    azure: AzureMetadataServer


@pytest.fixture(scope="module")
def clouds() -> Iterator[Clouds]:
    with AWSMetadataServer(ec2()) as aws, AzureMetadataServer(vm()) as azure:
        yield Clouds(aws, azure)


def add_provisioners(data_dir: Path, clouds: Clouds) -> None:
    """``aws`` (forms rsa2048 and signature) and ``aws-pkcs7`` (DSA only) admit the
    account; ``aws-other`` another one; ``aws-fresh`` instances launched in the last ten
    minutes, each document used once (no trust on first use). ``azure`` wants the attested document,
    ``azure-token`` does not; ``azure-other`` admits another subscription."""
    files = data_dir / "cloud"
    certificates = {
        form: str(clouds.aws.certificate_file(form, files, regions=REGIONS).relative_to(data_dir))
        for form in ("signature", "pkcs7", "rsa2048")
    }
    roots = str(clouds.azure.roots_file(files).relative_to(data_dir))
    intermediates = str(clouds.azure.intermediates_file(files).relative_to(data_dir))
    aws = {"type": "AWS", "issuer": "tls", "certificates": certificates}
    azure = {
        "type": "Azure",
        "issuer": "tls",
        "tenant_id": TENANT,
        "resource": RESOURCE,
        "roots": [roots],
        "intermediates": [intermediates],
        "jwks_url": clouds.azure.jwks_url,
        "key_refresh_interval": "1s",
    }
    config_path = data_dir / "devid.toml"
    config = tomllib.loads(config_path.read_text())
    config.setdefault("provisioners", []).extend(
        [
            {**aws, "name": "aws", "accounts": [ACCOUNT]},
            {**aws, "name": "aws-pkcs7", "accounts": [ACCOUNT], "forms": ["pkcs7"]},
            {**aws, "name": "aws-other", "accounts": ["210987654321"]},
            {
                **aws,
                "name": "aws-fresh",
                "accounts": [ACCOUNT],
                "max_instance_age": "10m",
                "trust_on_first_use": False,
            },
            {**azure, "name": "azure", "subscriptions": [SUBSCRIPTION]},
            {**azure, "name": "azure-token", "attested_document": False},
            {**azure, "name": "azure-other", "subscriptions": [str(uuid.uuid4())]},
        ]
    )
    config_path.write_text(tomli_w.dumps(config))


@attrs.frozen
class Served:
    server: DevidServer
    root: Path
    data: Path

    def ca_options(self) -> tuple[str, ...]:
        return ("--ca-url", self.server.url, "--root", str(self.root))


@pytest.fixture(scope="module", params=HOSTS)
def served(
    request: pytest.FixtureRequest,
    _ca_template: CA,
    clouds: Clouds,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """A CA with the AWS and Azure provisioners, served by ``devid serve`` on one host."""
    host = str(request.param)
    work = tmp_path_factory.mktemp(f"aws-azure-{host}")
    data = work / "ca"
    shutil.copytree(_ca_template.data_dir, data)
    add_provisioners(data, clouds)
    root = data / _ca_template.root_path.relative_to(_ca_template.data_dir)
    env = clean_env(DEVID_PASSWORD=_ca_template.password.decode())
    with devid_serve(data, work / "serve.log", host=host, root=root, env=env) as server:
        yield Served(server, root, data)


def certificate(
    served: Served,
    metadata: AWSMetadataServer | AzureMetadataServer,
    out: Path,
    *,
    subject: str,
    provisioner: str,
    check: bool = True,
) -> Any:
    """``devid ca certificate SUBJECT out.crt out.key --provisioner PROVISIONER
    --metadata-url URL`` on the instance *metadata* serves."""
    return run_devid(
        "ca", "certificate", subject, out.with_suffix(".crt"), out.with_suffix(".key"),
        "--provisioner", provisioner, "--metadata-url", metadata.url, *served.ca_options(),
        check=check, timeout=COMMAND_TIMEOUT,
    )  # fmt: skip


def refused(result: Any, *messages: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    for message in messages:
        assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def cloud(served: Served, *args: str, check: bool = True) -> Any:
    return run_devid("cloud", *args, "--data", served.data, check=check, timeout=COMMAND_TIMEOUT)


def renew(served: Served, out: Path) -> x509.Certificate:
    run_devid(
        "ca", "renew", out.with_suffix(".crt"), out.with_suffix(".key"), *served.ca_options(),
        timeout=COMMAND_TIMEOUT,
    )  # fmt: skip
    return leaf(out)


def leaf(out: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(out.with_suffix(".crt").read_bytes())[0]


def names(certificate: x509.Certificate) -> tuple[str, set[str]]:
    """The certificate's common name and its SANs, as ``dns:``, ``ip:``, ``uri:`` text."""
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    found = {f"dns:{n}" for n in sans.get_values_for_type(x509.DNSName)}
    found |= {f"ip:{n}" for n in sans.get_values_for_type(x509.IPAddress)}
    found |= {f"uri:{n}" for n in sans.get_values_for_type(x509.UniformResourceIdentifier)}
    return str(common_name), found


def first_use_cycle(
    served: Served,
    metadata: AWSMetadataServer | AzureMetadataServer,
    tmp_path: Path,
    *,
    subject: str,
    provisioner: str,
    instance_id: str,
) -> x509.Certificate:
    """One certificate; the second refused; renewal; forget; one more, once. The first
    certificate as issued."""
    certificate(served, metadata, tmp_path / "first", subject=subject, provisioner=provisioner)
    issued = leaf(tmp_path / "first")
    again = certificate(
        served, metadata, tmp_path / "again", subject=subject, provisioner=provisioner, check=False
    )
    refused(again, "the CA refused (401): token has already been used")
    assert not (tmp_path / "again.key").exists()
    assert instance_id in cloud(served, "list", provisioner).stdout.split()

    renewed = renew(served, tmp_path / "first")
    assert renewed.serial_number != issued.serial_number
    assert names(renewed) == names(issued)

    forgot = cloud(served, "forget", provisioner, instance_id)
    assert f"Instance {instance_id} is forgotten by provisioner {provisioner!r}" in forgot.stdout
    assert instance_id not in cloud(served, "list", provisioner).stdout.split()
    certificate(served, metadata, tmp_path / "rebuilt", subject=subject, provisioner=provisioner)
    refused(
        certificate(
            served, metadata, tmp_path / "twice", subject=subject, provisioner=provisioner,
            check=False,
        ),
        "token has already been used",
    )  # fmt: skip
    return issued


# --- AWS ------------------------------------------------------------------------------------


def test_an_ec2_instance_gets_one_certificate_until_the_operator_forgets_it(
    served: Served, clouds: Clouds, tmp_path: Path
) -> None:
    clouds.aws.instance = facts = ec2()
    clouds.aws.requests.clear()
    issued = first_use_cycle(
        served,
        clouds.aws,
        tmp_path,
        subject=facts.instance_id,
        provisioner="aws",
        instance_id=facts.instance_id,
    )
    assert names(issued) == (
        facts.instance_id,
        {
            "dns:ip-172-31-16-5.ec2.internal",
            "ip:172.31.16.5",
            f"uri:aws://{ACCOUNT}/us-east-1/{facts.instance_id}",
        },
    )
    # The CA's first form: rsa2048, through an IMDSv2 session.
    assert clouds.aws.requests[:2] == [
        ("PUT", "/latest/api/token", 200),
        ("GET", "/latest/dynamic/instance-identity/rsa2048", 200),
    ]


def test_the_dsa_form_when_the_provisioner_takes_only_that(
    served: Served, clouds: Clouds, tmp_path: Path
) -> None:
    clouds.aws.instance = facts = ec2(region="eu-west-1", private_ip="10.1.2.3")
    clouds.aws.requests.clear()
    certificate(
        served, clouds.aws, tmp_path / "dsa", subject=facts.instance_id, provisioner="aws-pkcs7"
    )
    assert ("GET", "/latest/dynamic/instance-identity/pkcs7", 200) in clouds.aws.requests
    assert names(leaf(tmp_path / "dsa"))[1] >= {
        "dns:ip-10-1-2-3.eu-west-1.compute.internal",
        "ip:10.1.2.3",
    }


def test_an_ec2_instance_of_another_account_is_refused(
    served: Served, clouds: Clouds, tmp_path: Path
) -> None:
    clouds.aws.instance = facts = ec2()
    refused(
        certificate(
            served, clouds.aws, tmp_path / "a", subject=facts.instance_id,
            provisioner="aws-other", check=False,
        ),
        f"the CA refused (403): AWS account {ACCOUNT} is not one provisioner 'aws-other' admits",
    )  # fmt: skip
    # That did not use the instance's first certificate.
    certificate(served, clouds.aws, tmp_path / "b", subject=facts.instance_id, provisioner="aws")


# --- Azure ----------------------------------------------------------------------------------


def test_an_azure_vm_gets_one_certificate_until_the_operator_forgets_it(
    served: Served, clouds: Clouds, tmp_path: Path
) -> None:
    clouds.azure.instance = facts = vm()
    issued = first_use_cycle(
        served, clouds.azure, tmp_path, subject="web-1", provisioner="azure",
        instance_id=facts.vm_id,
    )  # fmt: skip
    assert names(issued) == (
        "web-1",
        {f"uri:azure://{SUBSCRIPTION}/web-group/web-1", f"uri:urn:uuid:{facts.vm_id}"},
    )
    assert clouds.azure.resources[-1] == RESOURCE
    assert clouds.azure.nonces[-1] is not None  # the attested document, over a nonce


def test_an_azure_vm_without_the_attested_document(
    served: Served, clouds: Clouds, tmp_path: Path
) -> None:
    clouds.azure.instance = facts = vm(vm_name="web-2")
    asked = len(clouds.azure.nonces)
    first_use_cycle(
        served, clouds.azure, tmp_path, subject="web-2", provisioner="azure-token",
        instance_id=facts.resource_id.lower(),
    )  # fmt: skip
    assert len(clouds.azure.nonces) == asked  # never asked for
    assert names(leaf(tmp_path / "first")) == (
        "web-2",
        {f"uri:azure://{SUBSCRIPTION}/web-group/web-2"},
    )


def test_an_azure_vm_of_another_subscription_is_refused(
    served: Served, clouds: Clouds, tmp_path: Path
) -> None:
    clouds.azure.instance = vm()
    result = certificate(
        served, clouds.azure, tmp_path / "a", subject="web-1", provisioner="azure-other",
        check=False,
    )  # fmt: skip
    refused(result, "the CA refused (403)", SUBSCRIPTION)


def test_no_metadata_service_is_a_clear_error(served: Served, tmp_path: Path) -> None:
    for provisioner, cloud_name in (("aws", "AWS"), ("azure", "Azure")):
        with nothing_listening() as nowhere:
            result = run_devid(
                "ca", "certificate", "x", tmp_path / f"{provisioner}.crt", tmp_path / "x.key",
                "--provisioner", provisioner, "--metadata-url", nowhere, *served.ca_options(),
                check=False, timeout=COMMAND_TIMEOUT,
            )  # fmt: skip
        refused(result, f"devid: not on {cloud_name}: the metadata server at {nowhere}")


# --- refusals over HTTP ---------------------------------------------------------------------
#
# What an anonymous client can send to POST /1.0/sign: each refusal is a clear 4xx with a
# JSON body naming the reason, on both hosts, and leaves the instance's first certificate
# to the instance.


def post_sign(served: Served, key: ec.EllipticCurvePrivateKey, subject: str, ott: str) -> Any:
    """``POST /1.0/sign`` with a CSR for *key* and *ott*; the response."""
    csr = make_csr(key, subject, []).public_bytes(Encoding.PEM).decode()
    context = ssl.create_default_context(cafile=str(served.root))
    with httpx.Client(verify=context, timeout=COMMAND_TIMEOUT) as http:
        return http.post(f"{served.server.url}/1.0/sign", json={"csr": csr, "ott": ott})


def request_for(
    served: Served,
    key: ec.EllipticCurvePrivateKey,
    provisioner: str,
    cloud_name: str,
    evidence: dict[str, Any],
    *,
    ca_url: str | None = None,
) -> str:
    """An identity request signed by *key* for *provisioner* of this CA (or *ca_url*)."""
    audience = f"{ca_url or served.server.url}/1.0/sign#{provisioner}"
    return mint_identity_request(
        key, audience=audience, cloud=cloud_name, evidence=evidence, now=datetime.now(UTC)
    )


def refused_with(response: Any, status: int, *phrases: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["status"] == status and body["error"], body
    for phrase in phrases:
        assert phrase in body["message"], body


def azure_evidence(
    clouds: Clouds,
    served: Served,
    key: ec.EllipticCurvePrivateKey,
    facts: AzureInstance,
    *,
    nonce_key: ec.EllipticCurvePrivateKey | None = None,
    provisioner: str = "azure",
    **token_claims: Any,
) -> dict[str, str]:
    """What a VM sends: a token for the CA's resource and an attested document over the
    nonce of *nonce_key* (default *key*) and *provisioner*."""
    spki = (
        (nonce_key or key)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    nonce = instance_nonce(spki, f"{served.server.url}/1.0/sign#{provisioner}")
    content = clouds.azure.attested_content(nonce, instance=facts)
    return {
        "access_token": clouds.azure.token(RESOURCE, instance=facts, **token_claims),
        "attested": clouds.azure.attested(content=content),
    }


def test_an_aws_request_sent_twice_gets_one_certificate(served: Served, clouds: Clouds) -> None:
    facts, key = ec2(), ec.generate_private_key(ec.SECP256R1())
    evidence = {"rsa2048": clouds.aws.sign("rsa2048", clouds.aws.document(facts))}
    ott = request_for(served, key, "aws", "aws", evidence)
    assert post_sign(served, key, facts.instance_id, ott).status_code == 201
    refused_with(post_sign(served, key, facts.instance_id, ott), 401, "already been used")
    # The document of an enrolled instance, in a new request with another key: the
    # instance already has its certificate (trust on first use).
    thief = ec.generate_private_key(ec.SECP256R1())
    stolen = request_for(served, thief, "aws", "aws", evidence)
    refused_with(post_sign(served, thief, facts.instance_id, stolen), 401, "already been used")


def test_aws_documents_of_other_accounts_stale_or_forged_are_refused(
    served: Served, clouds: Clouds
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    def send(provisioner: str, facts: AWSInstance, document: str | None = None) -> Any:
        text = document if document is not None else clouds.aws.document(facts)
        evidence = {"document": text, "signature": clouds.aws.sign("signature", text)}
        if document is not None:  # signed as made, then changed
            evidence["document"] = document.replace("t3.micro", "t3.large")
        ott = request_for(served, key, provisioner, "aws", evidence)
        return post_sign(served, key, facts.instance_id, ott)

    other = ec2(account_id="210987654321")
    refused_with(send("aws", other), 403, "AWS account 210987654321 is not one")
    old = ec2(pending_time=datetime.now(UTC) - timedelta(hours=2))
    refused_with(send("aws-fresh", old), 403, "longer ago than provisioner 'aws-fresh' admits")
    facts = ec2()
    refused_with(send("aws", facts, clouds.aws.document(facts)), 401, "does not verify")
    elsewhere = request_for(
        served, key, "aws", "aws",
        {"rsa2048": clouds.aws.sign("rsa2048", clouds.aws.document(facts))},
        ca_url="https://ca.elsewhere.example",
    )  # fmt: skip
    refused_with(post_sign(served, key, facts.instance_id, elsewhere), 401, "audience")
    # None of that used the instance's first certificate.
    ott = request_for(
        served, key, "aws", "aws",
        {"rsa2048": clouds.aws.sign("rsa2048", clouds.aws.document(facts))},
    )  # fmt: skip
    assert post_sign(served, key, facts.instance_id, ott).status_code == 201


def test_without_trust_on_first_use_each_aws_document_is_used_once(
    served: Served, clouds: Clouds
) -> None:
    facts = ec2(pending_time=datetime.now(UTC) - timedelta(minutes=1))
    evidence = {"rsa2048": clouds.aws.sign("rsa2048", clouds.aws.document(facts))}
    first, second = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    ott = request_for(served, first, "aws-fresh", "aws", evidence)
    assert post_sign(served, first, facts.instance_id, ott).status_code == 201
    replay = request_for(served, second, "aws-fresh", "aws", evidence)
    refused_with(post_sign(served, second, facts.instance_id, replay), 401, "already been used")


def test_azure_identities_of_other_tenants_resources_keys_or_subscriptions_are_refused(
    served: Served, clouds: Clouds
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    facts = vm(vm_name="web-9")

    def send(evidence: dict[str, str], provisioner: str = "azure") -> Any:
        return post_sign(
            served, key, "web-9", request_for(served, key, provisioner, "azure", evidence)
        )

    other_tenant = vm(vm_name="web-9", tenant_id=str(uuid.uuid4()))
    refused_with(send(azure_evidence(clouds, served, key, other_tenant)), 401, "issuer")
    management: dict[str, Any] = {"aud": "https://management.azure.com/"}
    refused_with(send(azure_evidence(clouds, served, key, facts, **management)), 401, "audience")
    other_key = ec.generate_private_key(ec.SECP256R1())
    refused_with(
        send(azure_evidence(clouds, served, key, facts, nonce_key=other_key)), 401, "nonce"
    )
    refused_with(
        send(azure_evidence(clouds, served, key, facts, provisioner="azure-other"), "azure-other"),
        403,
        SUBSCRIPTION,
    )
    # None of that used the VM's first certificate; a second one is refused.
    evidence = azure_evidence(clouds, served, key, facts)
    assert send(evidence).status_code == 201
    refused_with(send(evidence), 401, "already been used")
