"""The Azure provisioner completes a signer's chain from the intermediate CAs its AIA names,
in process: the attested documents and certificates of an (unstarted) loopback metadata
server whose chain is Microsoft's shape (root → middle CA → issuing CA → signer, each
naming its issuer's certificate in an AIA caIssuers URL), and a stand-in for the host's
fetcher holding those certificates by URL.

Only hosts of ``intermediate_hosts`` are fetched from, at most three certificates per
request; a fetched certificate counts only as a CA certificate on a path to a configured
root; without ``fetch_intermediates`` nothing is fetched; a failed fetch with no path
otherwise is a 503.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from engine.csr import parse_csr
from engine.errors import ConfigurationError, ServiceUnavailable, Unauthorized
from engine.jose import public_key_from_jwk
from hosts.testing.keys import StaticRemoteKeys
from hosts.testing.metadata import AzureInstance, AzureMetadataServer
from plugins.api import AuthorizeContext, ProvisionerEnvironment, instance_nonce
from plugins.azure import AzureProvisioner
from plugins.azure.provisioner import IntermediateFetcher
from plugins.minting import mint_identity_request

SIGN_URL = "https://ca.example.com:8443/1.0/sign"
AUDIENCE = SIGN_URL + "#azure"
RESOURCE = "api://devid-ca"
LOOPBACK_HOSTS = ["127.0.0.1"]


@pytest.fixture(scope="module")
def imds() -> Iterator[AzureMetadataServer]:
    server = AzureMetadataServer(AzureInstance(), middle_ca=True, aia=True)
    yield server
    server.stop()


@pytest.fixture
def keys(imds: AzureMetadataServer) -> StaticRemoteKeys:
    keys = StaticRemoteKeys(discovery=False)
    keys.keys[imds.kid] = public_key_from_jwk(imds.jwks()["keys"][0])
    for name, cert in imds.pki.items():
        keys.certificates[imds.pki_url(name)] = cert.public_bytes(Encoding.DER)
    return keys


def provisioner(
    keys: StaticRemoteKeys, imds: AzureMetadataServer, **options: Any
) -> AzureProvisioner:
    settings: dict[str, Any] = {"intermediate_hosts": LOOPBACK_HOSTS, **options}
    return AzureProvisioner(
        name="azure",
        issuer="tls",
        tenant_id=imds.instance.tenant_id,
        resource=RESOURCE,
        remote_keys=keys,
        roots=[imds.root],
        jwks_url=imds.jwks_url,
        **settings,
    )


def sign(prov: AzureProvisioner, imds: AzureMetadataServer) -> Any:
    """A request of the machine *imds* serves, with a new key: its authorization."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web-1")]))
        .sign(key, hashes.SHA256())
    )
    csr = parse_csr(request.public_bytes(Encoding.DER))
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    evidence: dict[str, object] = {
        "access_token": imds.token(RESOURCE),
        "attested": imds.attested(instance_nonce(spki, AUDIENCE)),
    }
    now = datetime.now(UTC)
    ott = mint_identity_request(key, audience=AUDIENCE, cloud="azure", evidence=evidence, now=now)
    credential = AzureProvisioner.read_credential(ott)
    assert credential is not None
    ctx = AuthorizeContext(now=now, audiences=frozenset({SIGN_URL}))
    return prov.authorize_sign(credential, csr, ctx)


def test_the_chain_is_completed_from_two_levels_of_fetched_certificates(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    authorization = sign(provisioner(keys, imds), imds)
    assert authorization.policy.evidence["vm_id"] == imds.instance.vm_id
    # The signer's AIA names the issuing CA, whose own AIA names the middle CA.
    assert keys.asked_certificates == [imds.pki_url("issuing"), imds.pki_url("middle")]


def test_a_path_found_is_offered_to_later_requests_without_asking_again(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    prov = provisioner(keys, imds)
    sign(prov, imds)
    sign(prov, imds)
    assert keys.asked_certificates == [imds.pki_url("issuing"), imds.pki_url("middle")]
    # Still only candidates: under other roots, they lead nowhere and nothing is issued.
    other = AzureMetadataServer(AzureInstance(), middle_ca=True)
    try:
        prov.roots = (other.root,)
        with pytest.raises(Unauthorized, match="does not chain to a trusted root"):
            sign(prov, imds)
    finally:
        other.stop()


def test_the_aia_of_a_fetched_certificate_already_held_is_followed(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    sign(provisioner(keys, imds, intermediates=[imds.intermediate]), imds)
    assert keys.asked_certificates == [imds.pki_url("issuing"), imds.pki_url("middle")]


def test_nothing_is_fetched_when_the_chain_is_complete(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    sign(provisioner(keys, imds, intermediates=imds.intermediates), imds)
    assert keys.asked_certificates == []


def test_a_host_not_in_intermediate_hosts_is_never_fetched(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    prov = provisioner(keys, imds, intermediate_hosts=["www.microsoft.com"])
    with pytest.raises(Unauthorized) as refused:
        sign(prov, imds)
    assert keys.asked_certificates == []
    assert "does not chain to a trusted root" in refused.value.detail
    assert f"not fetching {imds.pki_url('issuing')!r}" in refused.value.detail
    assert "intermediate_hosts" in refused.value.detail


def test_default_hosts_are_microsofts(keys: StaticRemoteKeys, imds: AzureMetadataServer) -> None:
    prov = AzureProvisioner(
        name="azure",
        issuer="tls",
        tenant_id=imds.instance.tenant_id,
        resource=RESOURCE,
        remote_keys=keys,
        roots=[imds.root],
        jwks_url=imds.jwks_url,
    )
    assert prov.intermediate_hosts == {"www.microsoft.com", "cacerts.digicert.com"}
    with pytest.raises(Unauthorized, match="intermediate_hosts"):
        sign(prov, imds)
    assert keys.asked_certificates == []


def test_without_fetch_intermediates_the_refusal_is_as_before(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    prov = provisioner(keys, imds, fetch_intermediates=False)
    with pytest.raises(Unauthorized) as refused:
        sign(prov, imds)
    assert keys.asked_certificates == []
    assert refused.value.detail == (
        "the attested document's signer certificate does not chain to a trusted root"
        " with every certificate valid now (Azure rotates its intermediate CAs: add the"
        " current ones with the provisioner's intermediates option)"
    )


def _other_ca(name: str, *, ca: bool, aia: str | None = None) -> x509.Certificate:
    """A certificate named like the middle CA, issued by a root nobody trusts."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Nobody's Root")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if aia is not None:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(aia),
                    )
                ]
            ),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256())


def test_a_fetched_certificate_that_is_not_a_ca_does_not_help(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    # The issuing CA's URL serves the signer itself: not a CA certificate.
    keys.certificates[imds.pki_url("issuing")] = imds.signer.public_bytes(Encoding.DER)
    with pytest.raises(Unauthorized, match="does not chain to a trusted root"):
        sign(provisioner(keys, imds), imds)
    assert keys.asked_certificates == [imds.pki_url("issuing")]


def test_a_fetched_ca_that_leads_to_no_root_does_not_help(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    # The middle CA's URL serves a CA of the same name that another root issued (PEM).
    impostor = _other_ca("devid Test TLS RSA Root G2", ca=True)
    keys.certificates[imds.pki_url("middle")] = impostor.public_bytes(Encoding.PEM)
    with pytest.raises(Unauthorized, match="does not chain to a trusted root"):
        sign(provisioner(keys, imds), imds)
    assert keys.asked_certificates == [imds.pki_url("issuing"), imds.pki_url("middle")]


def test_a_fetch_that_fails_with_no_other_path_is_a_503(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    del keys.certificates[imds.pki_url("middle")]
    with pytest.raises(ServiceUnavailable) as unavailable:
        sign(provisioner(keys, imds), imds)
    assert "cannot be fetched" in unavailable.value.detail
    assert imds.pki_url("middle") in unavailable.value.detail


def test_a_fetch_failure_is_no_503_when_a_path_is_found_otherwise(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    # The middle CA cannot be fetched, but the issuing CA and the middle one configured
    # complete the path once the issuing CA served is the one held.
    del keys.certificates[imds.pki_url("middle")]
    sign(provisioner(keys, imds, intermediates=[imds.middle]), imds)
    assert keys.asked_certificates == [imds.pki_url("issuing")]


def test_at_most_three_certificates_are_fetched_per_request(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    # The middle CA's URL serves a CA leading nowhere but to a further URL, and so on.
    urls = [imds.pki_url(f"loop-{n}") for n in range(5)]
    keys.certificates[imds.pki_url("middle")] = _other_ca(
        "devid Test TLS RSA Root G2", ca=True, aia=urls[0]
    ).public_bytes(Encoding.DER)
    for here, there in itertools.pairwise(urls):
        keys.certificates[here] = _other_ca(f"CA {here}", ca=True, aia=there).public_bytes(
            Encoding.DER
        )
    with pytest.raises(Unauthorized, match="does not chain to a trusted root"):
        sign(provisioner(keys, imds), imds)
    assert keys.asked_certificates == [imds.pki_url("issuing"), imds.pki_url("middle"), urls[0]]


def test_intermediate_hosts_must_be_host_names(
    keys: StaticRemoteKeys, imds: AzureMetadataServer, tmp_path: Path
) -> None:
    (tmp_path / "roots.pem").write_bytes(imds.root.public_bytes(Encoding.PEM))
    env = ProvisionerEnvironment(data_dir=tmp_path, issuers=frozenset({"tls"}), remote_keys=keys)
    table: dict[str, Any] = {
        "type": "Azure",
        "tenant_id": imds.instance.tenant_id,
        "resource": RESOURCE,
        "roots": ["roots.pem"],
        "jwks_url": imds.jwks_url,
    }
    prov = AzureProvisioner.from_config("azure", table, env)
    assert prov.fetch_intermediates
    assert prov.intermediate_hosts == {"www.microsoft.com", "cacerts.digicert.com"}
    prov = AzureProvisioner.from_config(
        "azure",
        {**table, "intermediate_hosts": ["127.0.0.1", "WWW.Microsoft.com", "::1"]},
        env,
    )
    assert prov.intermediate_hosts == {"127.0.0.1", "www.microsoft.com", "::1"}
    off = AzureProvisioner.from_config("azure", {**table, "fetch_intermediates": False}, env)
    assert not off.fetch_intermediates
    for bad in ("http://www.microsoft.com", "www.microsoft.com:80", "www.microsoft.com/pki"):
        with pytest.raises(ConfigurationError, match="intermediate_hosts"):
            AzureProvisioner.from_config("azure", {**table, "intermediate_hosts": [bad]}, env)


def test_only_ports_80_and_443_except_on_loopback(
    keys: StaticRemoteKeys, imds: AzureMetadataServer
) -> None:
    prov = provisioner(keys, imds, intermediate_hosts=["www.microsoft.com", "127.0.0.1"])
    fetcher_hosts = prov.intermediate_hosts
    assert fetcher_hosts == {"www.microsoft.com", "127.0.0.1"}
    fetcher = IntermediateFetcher(keys, fetcher_hosts)
    assert fetcher.host_problem("http://www.microsoft.com/pkiops/certs/x.crt") is None
    assert fetcher.host_problem("https://www.microsoft.com:443/x.crt") is None
    assert fetcher.host_problem("http://127.0.0.1:8123/pki/x.crt") is None
    assert "ports 80 and 443" in (fetcher.host_problem("http://www.microsoft.com:8080/x") or "")
    assert "intermediate_hosts" in (fetcher.host_problem("http://microsoft.com/x.crt") or "")
    assert "intermediate_hosts" in (fetcher.host_problem("ftp://www.microsoft.com/x") or "")
    assert "credentials" in (fetcher.host_problem("http://u:p@www.microsoft.com/x") or "")
