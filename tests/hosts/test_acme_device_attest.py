"""device-attest-01 through the real host, with a fake attestation format registered for
the test (PluginManager.register), so that only the ACME rules are under test here:

- the ordered identifier must be one the attestation binds (else the challenge is invalid);
- at finalize the CSR must carry the attested key (else badCSR);
- the certificate carries the PermanentIdentifier, and the evidence is stored with it.

The real formats (tpm, apple, step) have their own tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import cbor2
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from cryptography.x509.oid import NameOID

from engine.acme.finalize import HARDWARE_MODULE_NAME_OID, read_hardware_module_name
from engine.acme.problems import ACMEProblem
from engine.assurance import Assurance
from engine.attestation.akcert import (
    EK_DIGEST_ASSIGNER,
    PERMANENT_IDENTIFIER_OID,
    identities_of_ak_certificate,
    permanent_identifier_name,
)
from engine.extensions import ProvisionerRef
from engine.inventory import ek_urn_from_digest, permanent_identifier_value
from engine.jose import b64url_encode
from engine.pipeline import build_certificate
from engine.template import CertificateTemplate
from hosts.store import Revocation
from plugins.attestation.base import AttestationContext, AttestationResult
from plugins.hookspecs import hookimpl
from tests.conftest import CA, RunningServer, ServerStop, start_server

from .acme_helpers import ACMEClient, acme_client, assert_problem, edit_provisioner, new_key
from .device_certs import issue_ak_certificate

DIGEST = hashlib.sha256(b"the EK of device one").digest()
DEVICE = permanent_identifier_value(DIGEST)  # what an AK certificate from devid binds
OTHER = permanent_identifier_value(hashlib.sha256(b"the EK of device two").digest())


class FakeFormat:
    """attStmt = {key: SPKI DER, ids: [identities], ka: SHA-256(key authorization)}."""

    format_name: ClassVar[str] = "fake"
    contexts: ClassVar[list[AttestationContext]] = []

    def verify(
        self, statement: Mapping[str, Any], key_authorization: str, context: AttestationContext
    ) -> AttestationResult:
        self.contexts.append(context)
        if statement.get("ka") != hashlib.sha256(key_authorization.encode()).digest():
            raise ACMEProblem("badAttestationStatement", "wrong key authorization digest")
        if statement.get("explode"):
            raise RuntimeError("a bug in a format plugin")
        ids = tuple(statement.get("ids", ()))
        return AttestationResult(
            format=self.format_name,
            public_key=load_der_public_key(statement["key"]),
            permanent_identifiers=tuple(i for i in ids if not i.startswith("serial:")),
            serial_numbers=tuple(i[7:] for i in ids if i.startswith("serial:")),
            evidence={"fake": True, "nonce": b"\x01\x02"},
            chain=tuple(x509.load_der_x509_certificate(d) for d in statement.get("chain", ())),
        )


class FakePlugin:
    @hookimpl
    def devid_attestation_formats(self) -> Sequence[Any]:
        return [FakeFormat()]


async def start_devices(
    ca: CA, nursery: trio.Nursery, *, require_inventory: bool = False
) -> tuple[RunningServer, ServerStop]:
    edit_provisioner(
        ca.data_dir,
        "devices",
        attestation_formats=["tpm", "apple", "step", "fake"],
        require_inventory=require_inventory,
        # The Agent CA vouches for registered devices only (docs/ca.md).
        issuer="agent" if require_inventory else "tls",
    )
    running, stop = await start_server(ca, nursery, "quart")
    running.authority.plugins.register(FakePlugin(), name="fake-attestation")
    return running, stop


@pytest.fixture
async def devices(ca: CA, nursery: trio.Nursery) -> AsyncIterator[RunningServer]:
    running, stop = await start_devices(ca, nursery)
    yield running
    await stop.close()


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def att_obj(
    key: ec.EllipticCurvePrivateKey, ids: list[str], key_authorization: str, **extra: Any
) -> str:
    statement = {
        "key": spki(key),
        "ids": ids,
        "ka": hashlib.sha256(key_authorization.encode()).digest(),
        **extra,
    }
    return b64url_encode(cbor2.dumps({"fmt": "fake", "attStmt": statement}))


def device_csr(key: ec.EllipticCurvePrivateKey, value: str, *, other_name: bool = True) -> str:
    """What the agent sends: CN = the identifier, and it again as a PermanentIdentifier."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])
    )
    if other_name:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([permanent_identifier_name(value)]), critical=False
        )
    return b64url_encode(builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER))


async def device_order(
    acme: ACMEClient, value: str = DEVICE, kind: str = "permanent-identifier"
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(order URL, order, the device-attest-01 challenge)."""
    r = await acme.new_order((kind, value))
    assert r.status_code == 201, r.text
    order = r.json()
    authz = (await acme.get(order["authorizations"][0])).json()
    assert [c["type"] for c in authz["challenges"]] == ["device-attest-01"]
    return r.headers["location"], order, authz["challenges"][0]


def key_authorization(acme: ACMEClient, challenge: dict[str, Any]) -> str:
    from engine.jose import jwk_from_public_key, jwk_thumbprint

    return f"{challenge['token']}.{jwk_thumbprint(jwk_from_public_key(acme.key.public_key()))}"


async def attest(
    acme: ACMEClient, challenge: dict[str, Any], key: ec.EllipticCurvePrivateKey, ids: list[str]
) -> dict[str, Any]:
    r = await acme.post(
        challenge["url"], {"attObj": att_obj(key, ids, key_authorization(acme, challenge))}
    )
    assert r.status_code == 200, r.text
    assert 'rel="up"' in r.headers["link"]
    body: dict[str, Any] = r.json()
    return body


async def test_bound_identifier_validates_and_the_certificate_carries_it(
    devices: RunningServer,
) -> None:
    device_key = ec.generate_private_key(ec.SECP256R1())
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        url, order, challenge = await device_order(acme)
        answered = await attest(acme, challenge, device_key, [DEVICE])
        assert answered["status"] == "valid"  # no background validation: it is synchronous
        assert (await acme.get(order["authorizations"][0])).json()["status"] == "valid"
        assert (await acme.get(url)).json()["status"] == "ready"
        r = await acme.post(order["finalize"], {"csr": device_csr(device_key, DEVICE)})
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["status"] == "valid"
        chain = x509.load_pem_x509_certificates((await acme.get(done["certificate"])).content)
    leaf = chain[0]
    assert leaf.public_key() == device_key.public_key()
    assert leaf.issuer == devices.authority.issuers["tls"].certificate.subject  # no inventory
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    (other,) = san.get_values_for_type(x509.OtherName)
    assert other.type_id == PERMANENT_IDENTIFIER_OID
    assert other == permanent_identifier_name(DEVICE, EK_DIGEST_ASSIGNER)
    assert identities_of_ak_certificate(leaf).permanent_identifiers == (DEVICE,)
    assert san.get_values_for_type(x509.DNSName) == []
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [o.dotted_string for o in eku] == ["1.3.6.1.5.5.7.3.2"]  # clientAuth only
    # A vendor format attested the key (not a TPM): hardware-attested.
    assert Assurance.of(leaf) is Assurance.HARDWARE_ATTESTED
    record = devices.authority.stores.certificates.get_certificate(format(leaf.serial_number, "x"))
    assert record is not None
    evidence = record.evidence
    assert evidence["method"] == "acme"
    assert evidence["identifiers"] == [{"type": "permanent-identifier", "value": DEVICE}]
    assert evidence["attestation"]["format"] == "fake"
    assert evidence["attestation"]["permanent_identifiers"] == [DEVICE]
    assert evidence["attestation"]["evidence"] == {"fake": True, "nonce": "AQI="}
    # tpm would get devid's own root and the Attestation CA; other formats only their roots.
    assert FakeFormat.contexts[-1].roots == ()


async def test_an_identity_the_attestation_does_not_bind_is_invalid(
    devices: RunningServer,
) -> None:
    device_key = ec.generate_private_key(ec.SECP256R1())
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        url, order, challenge = await device_order(acme, DEVICE)
        answered = await attest(acme, challenge, device_key, [OTHER])
        authz = (await acme.get(order["authorizations"][0])).json()
        view = (await acme.get(url)).json()
        refused = await acme.post(order["finalize"], {"csr": device_csr(device_key, DEVICE)})
    assert answered["status"] == "invalid"
    assert answered["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "does not bind" in answered["error"]["detail"]
    assert authz["status"] == "invalid"
    assert view["status"] == "invalid"
    assert_problem(refused, 403, "orderNotReady")


async def test_an_attestation_that_binds_no_identity_authorizes_nothing(
    devices: RunningServer,
) -> None:
    """A valid AK certificate without a PermanentIdentifier (step-ca accepts this; we do not)."""
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        _, _, challenge = await device_order(acme)
        answered = await attest(acme, challenge, new_key(), [])
    assert answered["status"] == "invalid"
    assert "binds no device identity" in answered["error"]["detail"]


async def test_a_csr_with_another_key_than_the_attested_one_is_bad(
    devices: RunningServer,
) -> None:
    attested, other = new_key(), new_key()
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        url, order, challenge = await device_order(acme)
        await attest(acme, challenge, attested, [DEVICE])
        refused = await acme.post(order["finalize"], {"csr": device_csr(other, DEVICE)})
        still = (await acme.get(url)).json()
        ok = await acme.post(order["finalize"], {"csr": device_csr(attested, DEVICE)})
    body = assert_problem(refused, 400, "badCSR")
    assert "attestation certified" in body["detail"]
    assert still["status"] == "ready"
    assert ok.status_code == 200 and ok.json()["status"] == "valid"


@pytest.mark.parametrize(
    ("csr_value", "with_dns"),
    [(OTHER, False), (DEVICE, True)],
    ids=["another identifier", "a DNS name too"],
)
async def test_a_device_csr_names_only_the_ordered_identifier(
    devices: RunningServer, csr_value: str, with_dns: bool
) -> None:
    key = new_key()
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        _, order, challenge = await device_order(acme)
        await attest(acme, challenge, key, [DEVICE])
        names: list[x509.GeneralName] = [permanent_identifier_name(csr_value)]
        if with_dns:
            names.append(x509.DNSName("device.example.com"))
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(key, hashes.SHA256())
        )
        r = await acme.post(
            order["finalize"], {"csr": b64url_encode(csr.public_bytes(Encoding.DER))}
        )
    assert_problem(r, 400, "badCSR")


async def test_a_csr_without_the_other_name_is_enough(devices: RunningServer) -> None:
    key = new_key()
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        _, order, challenge = await device_order(acme)
        await attest(acme, challenge, key, [DEVICE])
        r = await acme.post(order["finalize"], {"csr": device_csr(key, DEVICE, other_name=False)})
    assert r.status_code == 200, r.text


async def test_hardware_module_identifiers_bind_to_serial_numbers(
    devices: RunningServer,
) -> None:
    key = new_key()
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        _, order, challenge = await device_order(acme, "SN-0042", "hardware-module")
        answered = await attest(acme, challenge, key, ["serial:SN-0042"])
        assert answered["status"] == "valid"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        r = await acme.post(
            order["finalize"], {"csr": b64url_encode(csr.public_bytes(Encoding.DER))}
        )
        assert r.status_code == 200, r.text
        leaf = x509.load_pem_x509_certificates((await acme.get(r.json()["certificate"])).content)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    (other,) = san.get_values_for_type(x509.OtherName)
    assert other.type_id == HARDWARE_MODULE_NAME_OID
    parsed = read_hardware_module_name(other.value)
    assert parsed is not None and parsed[1] == b"SN-0042"


async def test_wrong_key_authorization_is_a_bad_statement(devices: RunningServer) -> None:
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        _, _, challenge = await device_order(acme)
        attobj = att_obj(new_key(), [DEVICE], "someone else's key authorization")
        r = await acme.post(challenge["url"], {"attObj": attobj})
    assert r.json()["status"] == "invalid"
    assert r.json()["error"]["type"] == "urn:ietf:params:acme:error:badAttestationStatement"


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({}, "attObj"),
        ({"attObj": 5}, "attObj"),
        ({"attObj": "not base64url!"}, "base64url"),
    ],
)
async def test_a_malformed_response_leaves_the_challenge_pending(
    devices: RunningServer, payload: dict[str, Any], detail: str
) -> None:
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        _, _, challenge = await device_order(acme)
        r = await acme.post(challenge["url"], payload)
        view = (await acme.get(challenge["url"])).json()
    body = assert_problem(r, 400, "malformed")
    assert detail in body["detail"]
    assert view["status"] == "pending"


def _statement(statement: dict[str, Any]) -> str:
    return b64url_encode(cbor2.dumps({"fmt": "fake", "attStmt": statement}))


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "att",
    [
        b64url_encode(b"\xff\xff not CBOR"),
        b64url_encode(cbor2.dumps([1, 2, 3])),
        b64url_encode(cbor2.dumps({"fmt": "fake"})),
        b64url_encode(cbor2.dumps({"fmt": "nope", "attStmt": {}})),
        b64url_encode(cbor2.dumps({"fmt": "tpm-but-not-enabled", "attStmt": {}})),
        b64url_encode(cbor2.dumps({"fmt": "fake", "attStmt": {}, "extra": 1})),
        b64url_encode(cbor2.dumps({"fmt": "fake", "attStmt": {"x": cbor2.CBORTag(1, 0)}})),
        _statement({"x": cbor2.CBORTag(28, [cbor2.CBORTag(29, 0)])}),
        _statement({"d": _nested(20)}),
    ],
    ids=[
        "not CBOR",
        "an array",
        "no attStmt",
        "unknown format",
        "format not enabled",
        "unexpected member",
        "a tag",
        "shared references",
        "too deep",
    ],
)
async def test_bad_attestation_objects_make_the_challenge_invalid(
    devices: RunningServer, att: str
) -> None:
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        _, _, challenge = await device_order(acme)
        r = await acme.post(challenge["url"], {"attObj": att})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "invalid"
    assert r.json()["error"]["type"] == "urn:ietf:params:acme:error:badAttestationStatement"


async def test_a_crashing_format_plugin_is_a_bad_statement_not_a_500(
    devices: RunningServer,
) -> None:
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        _, _, challenge = await device_order(acme)
        ka = key_authorization(acme, challenge)
        attobj = att_obj(new_key(), [DEVICE], ka, explode=True)
        r = await acme.post(challenge["url"], {"attObj": attobj})
    assert r.status_code == 200
    assert r.json()["error"]["type"] == "urn:ietf:params:acme:error:badAttestationStatement"


async def test_provisioners_accept_only_their_identifier_types(devices: RunningServer) -> None:
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        dns = await acme.new_order(("dns", "device.example.com"))
        mixed = await acme.new_order(
            ("permanent-identifier", DEVICE), ("permanent-identifier", OTHER)
        )
    assert_problem(dns, 400, "unsupportedIdentifier")
    assert_problem(mixed, 400, "rejectedIdentifier")
    async with acme_client(devices, "acme") as acme:
        await acme.new_account()
        device = await acme.new_order(("permanent-identifier", DEVICE))
    assert_problem(device, 400, "unsupportedIdentifier")


async def test_the_inventory_can_be_required(ca: CA, nursery: trio.Nursery) -> None:
    server, stop = await start_devices(ca, nursery, require_inventory=True)
    inventory = server.authority.inventory
    try:
        async with acme_client(server, "devices") as acme:
            await acme.new_account()
            _, _, challenge = await device_order(acme)
            unknown = await attest(acme, challenge, new_key(), [DEVICE])
            assert unknown["status"] == "invalid"
            assert "inventory" in unknown["error"]["detail"]

            await trio.to_thread.run_sync(inventory.add, {"ek": ek_urn_from_digest(DIGEST)})
            _, _, challenge = await device_order(acme)
            known = await attest(acme, challenge, new_key(), [DEVICE])
            assert known["status"] == "valid"

            await trio.to_thread.run_sync(inventory.disable, ek_urn_from_digest(DIGEST))
            _, _, challenge = await device_order(acme)
            disabled = await attest(acme, challenge, new_key(), [DEVICE])
            assert disabled["status"] == "invalid"
            assert "disabled" in disabled["error"]["detail"]

            # An attestation that names no EK (apple, step: a serial number) cannot be
            # found in the inventory, so it is refused rather than waved through.
            _, _, challenge = await device_order(acme, "SN-0042", "hardware-module")
            vendor_only = await attest(acme, challenge, new_key(), ["serial:SN-0042"])
            assert vendor_only["status"] == "invalid"
            assert vendor_only["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
            assert "names no EK" in vendor_only["error"]["detail"]
    finally:
        await stop.close()


async def test_an_ak_certificate_revoked_here_attests_nothing(devices: RunningServer) -> None:
    """Disabling a device revokes its AK certificate; an attestation that leans on it (the
    device enabled again, or a copy of its old statement) must attest anew first."""
    authority = devices.authority
    ak = issue_ak_certificate(devices, "device-one")
    chain = [c.public_bytes(Encoding.DER) for c in ak.chain]
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        _, _, challenge = await device_order(acme)
        fine = await attest_with(acme, challenge, new_key(), [DEVICE], chain=chain)
        assert fine["status"] == "valid", fine

        revocation = Revocation(
            serial=format(ak.certificate.serial_number, "x"),
            issuer="attestation",
            revoked_at=authority.clock.now(),
            reason_code=9,
            reason="device disabled",
            revoked_by="test",
        )
        assert await trio.to_thread.run_sync(authority.stores.certificates.revoke, revocation)
        _, _, challenge = await device_order(acme)
        refused = await attest_with(acme, challenge, new_key(), [DEVICE], chain=chain)
        assert refused["status"] == "invalid"
        assert refused["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
        assert "AK certificate is revoked" in refused["error"]["detail"]


async def test_an_ak_certificate_this_ca_never_recorded_attests_nothing(
    devices: RunningServer,
) -> None:
    """Signed by the Attestation CA but absent from the store (a lost database, a forged
    issuance): fail closed."""
    ak = issue_ak_certificate(devices, "device-one")
    stranger = build_certificate(
        CertificateTemplate(subject=ak.certificate.subject, extended_key_usage=()),
        ak.key.public_key(),
        devices.authority.issuers["attestation"],
        ak.certificate.serial_number + 1,
        ak.certificate.not_valid_before_utc,
        ak.certificate.not_valid_after_utc,
        ProvisionerRef(type="attestation", name="tpm"),
    )
    chain = [stranger.public_bytes(Encoding.DER), ak.chain[1].public_bytes(Encoding.DER)]
    async with acme_client(devices, "devices") as acme:
        await acme.new_account()
        _, _, challenge = await device_order(acme)
        refused = await attest_with(acme, challenge, new_key(), [DEVICE], chain=chain)
        assert refused["status"] == "invalid"
        assert "unknown to this CA" in refused["error"]["detail"]


async def attest_with(
    acme: ACMEClient,
    challenge: dict[str, Any],
    key: ec.EllipticCurvePrivateKey,
    ids: list[str],
    *,
    chain: list[bytes],
) -> dict[str, Any]:
    r = await acme.post(
        challenge["url"],
        {"attObj": att_obj(key, ids, key_authorization(acme, challenge), chain=chain)},
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body
