"""The Attestation CA over real HTTPS: ``POST /attest`` then ``POST /secret``.

software TPM stand-in: the real swtpm exchange is tested in tests/agent.
The quart host runs for real and the fake device (tests/attestation_fakes.py) speaks the
wire format, so every refusal can be produced on purpose and checked: a 4xx JSON error,
never a 500, no certificate stored and the device record untouched.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import tomli_w
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.attestation import TCG_KP_AIK_CERTIFICATE, identities_of_ak_certificate
from engine.inventory import permanent_identifier_value
from engine.tpm import ObjectAttributes, TPMAlg, TPMError
from tests.attestation_fakes import (
    AK_ATTRIBUTES,
    FakeDevice,
    Vendor,
    b64,
    ec_key,
    make_ak,
    make_device,
    make_ek,
    make_vendor,
)
from tests.conftest import CA, PASSWORD, RunningServer

from .helpers import assert_json_error, client, running_server


def configure(ca: CA, **attestation: Any) -> None:
    """Write ``[attestation]`` into the CA's devid.toml (before the server loads it)."""
    path = ca.data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    config["attestation"] = attestation
    path.write_text(tomli_w.dumps(config))


def trust(ca: CA, vendor: Vendor, **attestation: Any) -> None:
    root = vendor.write_root(ca.data_dir / "ek-vendor-root.pem")
    configure(ca, ek_roots=[str(root)], **attestation)


@asynccontextmanager
async def attestation_ca(ca: CA) -> AsyncIterator[tuple[RunningServer, httpx.AsyncClient]]:
    async with running_server(ca.data_dir, PASSWORD) as server, client(server) as http:
        yield server, http


def register(server: RunningServer, device: FakeDevice, **fields: Any) -> None:
    server.authority.inventory.add({"ek": device.urn, **fields})


async def attest(http: httpx.AsyncClient, device: FakeDevice, **body: Any) -> dict[str, Any]:
    r = await http.post("/attest", json={**device.attest_body(), **body})
    assert r.status_code == 200, r.text
    challenge = r.json()
    assert set(challenge) == {"credential", "secret"}
    return dict(challenge)


async def enroll(http: httpx.AsyncClient, device: FakeDevice) -> list[x509.Certificate]:
    """The whole exchange; returns the chain the CA sent."""
    challenge = await attest(http, device)
    r = await http.post("/secret", json=device.activate(challenge))
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["chain"]
    return [
        x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in body["chain"]
    ]


@attrs.frozen
class Snapshot:
    """What a refused request must leave as it was."""

    certificates: int
    devices: dict[str, Any]


def snapshot(server: RunningServer, *devices: FakeDevice) -> Snapshot:
    stores = server.authority.stores
    return Snapshot(
        stores.certificates.count_certificates(),
        {d.urn: stores.devices.get_device(d.urn) for d in devices},
    )


def openssl_text(cert: x509.Certificate, workdir: Path) -> str:
    path = workdir / "ak.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    result = subprocess.run(
        ["openssl", "x509", "-in", str(path), "-noout", "-text"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


# --- the exchange ------------------------------------------------------------------------


async def test_a_registered_device_gets_an_ak_certificate(ca: CA, tmp_path: Path) -> None:
    device = make_device("rsa", "ecc")
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        before = server.authority.stores.certificates.count_certificates()
        chain = await enroll(http, device)
        assert server.authority.stores.certificates.count_certificates() == before + 1

    ak_cert, attestation = chain
    attestation_ca_cert = server.authority.issuers["attestation"].certificate
    assert attestation == attestation_ca_cert
    ak_cert.verify_directly_issued_by(attestation_ca_cert)
    assert ak_cert.public_key() == device.ak.private_key.public_key()
    assert len(ak_cert.subject) == 0

    text = openssl_text(ak_cert, tmp_path)
    assert "2.23.133.8.3" in text
    assert "2.23.133.2.1=id:53544D20" in text  # the TPM attributes from tpmInfo
    assert "2.23.133.2.2=SW   TPM" in text
    assert "2.23.133.2.3=id:00010002" in text
    assert f"URI:{device.urn}" in text and "URI:urn:ek:sha256:" in text
    # OpenSSL 3.0 names the otherName type but cannot print its value.
    assert "othername: Permanent Identifier" in text or "1.3.6.1.5.5.7.8.3" in text
    assert "CA:FALSE" in text
    identities = identities_of_ak_certificate(ak_cert)
    assert identities.permanent_identifiers == (permanent_identifier_value(device.ek.digest),)
    assert identities.ek_urns == (device.urn,)


async def test_the_ak_certificate_chains_to_the_root_for_openssl(ca: CA, tmp_path: Path) -> None:
    device = make_device("ecc", "rsa")
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        ak_cert, attestation = await enroll(http, device)
    (tmp_path / "ak.pem").write_bytes(ak_cert.public_bytes(Encoding.PEM))
    (tmp_path / "attestation.pem").write_bytes(attestation.public_bytes(Encoding.PEM))
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(ca.root_path),
            "-untrusted",
            str(tmp_path / "attestation.pem"),
            str(tmp_path / "ak.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    eku = ak_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [TCG_KP_AIK_CERTIFICATE]


async def test_the_ak_certificate_is_stored_with_its_evidence(ca: CA) -> None:
    device = make_device("ecc", "ecc")
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        ak_cert, _ = await enroll(http, device)
        record = server.authority.stores.certificates.get_certificate(
            format(ak_cert.serial_number, "x")
        )
        device_after = server.authority.stores.devices.get_device(device.urn)
    assert record is not None
    assert record.issuer == "attestation"
    assert record.provisioner_type == "attestation"
    assert record.der == ak_cert.public_bytes(Encoding.DER)
    assert record.evidence["method"] == "tpm-credential-activation"
    assert record.evidence["ek"] == device.urn
    assert record.evidence["ak_name"] == device.ak.name.hex()
    assert record.evidence["ek_certificate_verified"] is False
    assert device_after is not None and device_after.active


async def test_replaying_the_answer_is_unauthorized(ca: CA) -> None:
    device = make_device("rsa", "ecc")
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        challenge = await attest(http, device)
        answer = device.activate(challenge)
        first = await http.post("/secret", json=answer)
        assert first.status_code == 200, first.text
        count = server.authority.stores.certificates.count_certificates()
        replay = await http.post("/secret", json=answer)
        assert_json_error(replay, 401)
        assert server.authority.stores.certificates.count_certificates() == count


async def test_a_wrong_answer_does_not_burn_the_session(ca: CA) -> None:
    """Sessions are found by the answer itself: guessing cannot cancel a device's session."""
    device = make_device("ecc", "ecc")
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        challenge = await attest(http, device)
        secret = device.recover(challenge)
        wrong = await http.post("/secret", json={"secret": b64(bytes(b ^ 0x55 for b in secret))})
        error = assert_json_error(wrong, 401)
        for rendering in (secret.hex(), b64(secret), b64(secret).rstrip("=")):
            assert rendering not in wrong.text and rendering not in error["message"]
        right = await http.post("/secret", json={"secret": b64(secret)})
        assert right.status_code == 200, right.text


# --- EK certificates and the [attestation] settings -------------------------------------------


async def test_an_ek_certificate_from_a_configured_root_is_verified(ca: CA) -> None:
    vendor = make_vendor()
    trust(ca, vendor)
    device = make_device("rsa", "ecc", vendor=vendor)
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        ak_cert, _ = await enroll(http, device)
        record = server.authority.stores.certificates.get_certificate(
            format(ak_cert.serial_number, "x")
        )
    assert record is not None and record.evidence["ek_certificate_verified"] is True
    assert device.ek.certificate is not None
    assert record.evidence["ek_certificate_sha256"] is not None
    directory = ak_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert directory.get_values_for_type(x509.DirectoryName)


async def test_an_ek_root_dropped_into_the_ek_roots_directory_is_trusted(ca: CA) -> None:
    vendor = make_vendor("Dropped-in Vendor", slot=2)
    (ca.data_dir / "ek-roots").mkdir(exist_ok=True)  # `devid init` creates it
    vendor.write_root(ca.data_dir / "ek-roots" / "dropped-in.pem")
    device = make_device("ecc", "ecc", vendor=vendor)
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        ak_cert, _ = await enroll(http, device)
        record = server.authority.stores.certificates.get_certificate(
            format(ak_cert.serial_number, "x")
        )
    assert record is not None and record.evidence["ek_certificate_verified"] is True


async def test_an_ek_certificate_from_an_unknown_root_is_refused(ca: CA) -> None:
    trusted, untrusted = make_vendor("Trusted"), make_vendor("Untrusted", slot=1)
    trust(ca, trusted)
    device = make_device("rsa", "ecc", vendor=untrusted)
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        before = snapshot(server, device)
        r = await http.post("/attest", json=device.attest_body())
        assert "not trusted" in assert_json_error(r, 403)["message"]
        assert snapshot(server, device) == before


async def test_record_policy_accepts_an_unverifiable_ek_certificate(ca: CA) -> None:
    trusted, untrusted = make_vendor("Trusted"), make_vendor("Untrusted", slot=1)
    trust(ca, trusted, unverifiable_ek_certificate="record")
    device = make_device("ecc", "ecc", vendor=untrusted)
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        ak_cert, _ = await enroll(http, device)
        record = server.authority.stores.certificates.get_certificate(
            format(ak_cert.serial_number, "x")
        )
    assert record is not None
    assert record.evidence["ek_certificate_verified"] is False
    assert record.evidence["ek_certificate_sha256"] is not None


async def test_require_ek_certificate_refuses_a_bare_ek(ca: CA) -> None:
    vendor = make_vendor()
    trust(ca, vendor, require_ek_certificate=True)
    bare = make_device("rsa", "ecc")
    certified = make_device("ecc", "ecc", slot=1, vendor=vendor)
    async with attestation_ca(ca) as (server, http):
        register(server, bare)
        register(server, certified)
        before = snapshot(server, bare)
        r = await http.post("/attest", json=bare.attest_body())
        assert "requires an EK certificate" in assert_json_error(r, 403)["message"]
        assert snapshot(server, bare) == before
        await enroll(http, certified)


async def test_a_late_answer_is_unauthorized(ca: CA) -> None:
    configure(ca, challenge_lifetime="1s")
    device = make_device("ecc", "ecc")
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        challenge = await attest(http, device)
        answer = device.activate(challenge)
        await trio.sleep(2.1)
        before = snapshot(server, device)
        r = await http.post("/secret", json=answer)
        assert "expired" in assert_json_error(r, 401)["message"]
        assert snapshot(server, device) == before


async def test_ak_certificate_lifetime_is_configurable(ca: CA) -> None:
    configure(ca, ak_certificate_lifetime="2h")
    device = make_device("rsa", "rsa")
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        ak_cert, _ = await enroll(http, device)
    lifetime = ak_cert.not_valid_after_utc - ak_cert.not_valid_before_utc
    assert 7200 <= lifetime.total_seconds() <= 7200 + 120


# --- refusals ---------------------------------------------------------------------------------


def _spoiled_device(**ak_options: Any) -> FakeDevice:
    return attrs.evolve(make_device("rsa", "ecc"), ak=make_ak("ecc", **ak_options))


def _with_params(device: FakeDevice, **changes: Any) -> dict[str, Any]:
    body = device.attest_body()
    body["params"].update(changes)
    return body


def _without(device: FakeDevice, *path: str) -> dict[str, Any]:
    body = device.attest_body()
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


async def test_every_bad_attest_request_is_a_4xx_json_error_that_changes_nothing(
    ca: CA,
) -> None:
    vendor, stranger = make_vendor(), make_vendor("Stranger", slot=1)
    trust(ca, vendor)
    device = make_device("rsa", "ecc")
    disabled = make_device("ecc", "ecc", slot=1)
    unregistered = make_device("rsa", "ecc", slot=2)
    public = base64.b64decode(device.ak.params()["public"])
    someone_elses_cert = vendor.ek_certificate(make_ek("ecc", slot=3).public_key)
    untrusted = stranger.ek_certificate(device.ek.public_key)

    cases: list[tuple[str, int, Any]] = [
        ("unregistered device", 403, unregistered.attest_body()),
        ("disabled device", 403, disabled.attest_body()),
        (
            "AK without fixedTPM",
            400,
            _spoiled_device(attributes=AK_ATTRIBUTES & ~ObjectAttributes.FIXED_TPM).attest_body(),
        ),
        (
            "AK that decrypts",
            400,
            _spoiled_device(attributes=AK_ATTRIBUTES | ObjectAttributes.DECRYPT).attest_body(),
        ),
        ("SHA-1 AK", 400, _spoiled_device(name_alg=TPMAlg.SHA1).attest_body()),
        ("SHA-1 signature", 400, _spoiled_device(signature_hash=TPMAlg.SHA1).attest_body()),
        ("signed by another key", 400, _spoiled_device(signer=ec_key(42)).attest_body()),
        ("truncated public", 400, _with_params(device, public=b64(public[:-3]))),
        ("garbage base64", 400, _with_params(device, createAttestation="%%%")),
        ("wrong type", 400, _with_params(device, createSignature=["AAAA"])),
        ("missing createData", 400, _without(device, "params", "createData")),
        ("missing params", 400, _without(device, "params")),
        ("no EK at all", 400, _without(device, "ek")),
        ("EK that is no key", 400, {**device.attest_body(), "ek": b64(b"\x30\x00")}),
        ("TPM 1.2", 400, {**device.attest_body(), "tpmInfo": {"version": "1.2"}}),
        ("EK certificate of another EK", 403, device.attest_body(ek_certs=[someone_elses_cert])),
        ("EK certificate from an unknown vendor", 403, device.attest_body(ek_certs=[untrusted])),
        ("body is a list", 400, [device.attest_body()]),
        ("body is a string", 400, "attest"),
    ]
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        register(server, disabled, status="disabled")
        before = snapshot(server, device, disabled, unregistered)
        for label, status, body in cases:
            r = await http.post("/attest", json=body)
            assert r.status_code == status, (label, r.text)
            assert_json_error(r, status)
            assert snapshot(server, device, disabled, unregistered) == before, label

        raw_cases: list[tuple[str, int, bytes, str]] = [
            ("not JSON", 400, b"{not json", "application/json"),
            ("not UTF-8", 400, b"\xff\xfe{}", "application/json"),
            ("form data", 415, b"a=b", "application/x-www-form-urlencoded"),
            ("too deep", 400, b"[" * 60_000, "application/json"),
            ("too large", 413, b'{"a": "' + b"A" * (65 * 1024) + b'"}', "application/json"),
        ]
        for label, status, raw, content_type in raw_cases:
            # A fresh connection each: after a 413 the server may drop the connection.
            async with client(server) as fresh:
                r = await fresh.post("/attest", content=raw, headers={"content-type": content_type})
            assert r.status_code == status, (label, r.text)
            assert_json_error(r, status)
            assert snapshot(server, device, disabled, unregistered) == before, label

        # The registered device still attests after all that.
        await enroll(http, device)


async def test_every_bad_answer_is_a_4xx_json_error_that_changes_nothing(ca: CA) -> None:
    device = make_device("ecc", "ecc")
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        challenge = await attest(http, device)
        secret = device.recover(challenge)
        before = snapshot(server, device)
        cases: list[tuple[str, int, Any]] = [
            ("no secret", 400, {}),
            ("secret is null", 400, {"secret": None}),
            ("secret is a number", 400, {"secret": 42}),
            ("secret is not base64", 400, {"secret": "!!!"}),
            ("secret is too long", 400, {"secret": "A" * 200}),
            ("body is a list", 400, [b64(secret)]),
            ("wrong secret", 401, {"secret": b64(bytes(32))}),
            ("short secret", 401, {"secret": b64(secret[:16])}),
            ("secret plus a byte", 401, {"secret": b64(secret + b"\x00")}),
            ("the credential blob itself", 401, {"secret": challenge["secret"][:100]}),
        ]
        for label, status, body in cases:
            r = await http.post("/secret", json=body)
            assert r.status_code == status, (label, r.text)
            error = assert_json_error(r, status)
            assert b64(secret) not in r.text and secret.hex() not in r.text, label
            assert error["message"]
            assert snapshot(server, device) == before, label
        r = await http.post("/secret", content=b"secret", headers={"content-type": "text/plain"})
        assert_json_error(r, 415)
        # The real answer still works: wrong guesses do not consume the session.
        r = await http.post("/secret", json={"secret": b64(secret)})
        assert r.status_code == 200, r.text


async def test_a_device_disabled_during_the_exchange_gets_no_certificate(ca: CA) -> None:
    device = make_device("rsa", "ecc")
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        challenge = await attest(http, device)
        server.authority.inventory.disable(device.urn)
        before = snapshot(server, device)
        r = await http.post("/secret", json=device.activate(challenge))
        assert "disabled or removed" in assert_json_error(r, 403)["message"]
        assert snapshot(server, device) == before


async def test_a_device_removed_during_the_exchange_gets_no_certificate(ca: CA) -> None:
    device = make_device("ecc", "rsa")
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        challenge = await attest(http, device)
        server.authority.inventory.remove(device.urn)
        count = server.authority.stores.certificates.count_certificates()
        r = await http.post("/secret", json=device.activate(challenge))
        assert_json_error(r, 403)
        assert server.authority.stores.certificates.count_certificates() == count
        assert server.authority.stores.devices.get_device(device.urn) is None


async def test_the_challenge_is_bound_to_the_ak_the_server_checked(ca: CA) -> None:
    """A TPM holding a different AK (here: one without fixedTPM) cannot answer."""
    device = make_device("rsa", "ecc")
    async with attestation_ca(ca) as (server, http):
        register(server, device)
        challenge = await attest(http, device)
        other = attrs.evolve(
            device,
            ak=make_ak("ecc", slot=5, attributes=AK_ATTRIBUTES & ~ObjectAttributes.FIXED_TPM),
        )
        with pytest.raises(TPMError, match="integrity"):  # as a real TPM would refuse
            other.recover(challenge)


def test_the_wire_format_is_plain_json() -> None:
    """The /attest body the fake sends is what docs/attestation.md documents."""
    body = make_device("rsa", "ecc", vendor=make_vendor()).attest_body()
    assert set(body) == {"tpmInfo", "ek", "ekCerts", "params"}
    assert set(body["params"]) == {"public", "createData", "createAttestation", "createSignature"}
    json.dumps(body)
    for value in [body["ek"], *body["ekCerts"], *body["params"].values()]:
        base64.b64decode(value, validate=True)
