"""Enrolment end to end: a real swtpm, the real quart host, ACME device-attest-01.

swtpm -> `devid agent attest` (AK certificate from the Attestation CA) ->
`enroll` through /acme/devices/directory (the provisioner `devid init` creates,
device-attest-01 only, issuing from the Agent CA) -> a device certificate that
chains to the root, carries the ordered PermanentIdentifier, certifies the TPM
key, and is written nowhere.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from agent.acme import ACCOUNT_KEY_FILE, ACMEError
from agent.attestation import attest
from agent.enroll import Enrollment, device_identifier, enroll
from agent.state import AgentError, AgentState
from agent.tpm import TPM, KeyAlgorithm, public_of
from engine.assurance import Assurance
from engine.attestation.akcert import identities_of_ak_certificate
from engine.inventory import permanent_identifier_value
from engine.tpm import public_key_from_tpmt
from hosts.cli import main
from tests.conftest import CA, RunningServer

if TYPE_CHECKING:
    from tests.swtpm import LocalCA, Swtpm, SwtpmFactory

pytest_plugins = ["tests.swtpm"]

PROVISIONER = "devices"


def directory_url(server: RunningServer) -> str:
    return f"{server.url}/acme/{PROVISIONER}/directory"


def trust_swtpm_ek_ca(server: RunningServer, ca: LocalCA) -> None:
    """Make the Attestation CA trust the swtpm local CA as an EK certificate issuer."""
    root = x509.load_pem_x509_certificate(ca.root.read_bytes())
    intermediate = x509.load_pem_x509_certificate(ca.intermediate.read_bytes())
    policy = server.authority.attestation.policy
    server.authority.attestation.policy = attrs.evolve(
        policy,
        ek_roots=(*policy.ek_roots, root),
        ek_intermediates=(*policy.ek_intermediates, intermediate),
    )


def register(server: RunningServer, swtpm: Swtpm) -> str:
    with TPM(swtpm.tcti) as tpm:
        urn = tpm.endorsement_key().urn
    server.authority.inventory.add({"ek": urn, "name": f"swtpm-{swtpm.ek_type}"})
    return urn


@pytest.fixture
def device(quart_server: RunningServer, swtpm_ek_ca: LocalCA, swtpm_factory: SwtpmFactory) -> Swtpm:
    """A registered swtpm (RSA EK) whose EK CA the server trusts."""
    trust_swtpm_ek_ca(quart_server, swtpm_ek_ca)
    instance = swtpm_factory("rsa")
    register(quart_server, instance)
    return instance


@attrs.frozen
class Enrolled:
    enrollment: Enrollment
    proof: bytes  # a signature over b"proof" by the TPM key, made while the TPM was open
    ak_chain: list[x509.Certificate]


async def run_enroll(
    server: RunningServer, swtpm: Swtpm, state: Path, **kwargs: object
) -> Enrolled:
    def work() -> Enrolled:
        with TPM(swtpm.tcti) as tpm:
            enrollment = enroll(
                directory_url(server),
                server.root_path,
                tpm,
                state,
                ca_url=server.url,
                **kwargs,  # type: ignore[arg-type]
            )
            proof = enrollment.key.sign(b"proof", ec.ECDSA(hashes.SHA256()))
            assert tpm.loaded_objects() == 0
        chain = AgentState(state).load_chain()
        assert chain is not None
        return Enrolled(enrollment, proof, chain)

    return await trio.to_thread.run_sync(work)


def openssl_verify(root: Path, chain: list[x509.Certificate], workdir: Path) -> None:
    """`openssl verify` of the leaf (given on stdin, never written) against the root."""
    intermediates = workdir / "intermediates.pem"
    intermediates.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in chain[1:]))
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(intermediates)],
        input=chain[0].public_bytes(Encoding.PEM),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith(b"OK"), result


def files_holding(certificate: x509.Certificate, top: Path, *, skip: Path) -> list[Path]:
    """Files under *top* (but not under *skip*) holding the certificate as DER, PEM or base64."""
    der = certificate.public_bytes(Encoding.DER)
    pem = certificate.public_bytes(Encoding.PEM)
    b64 = base64.b64encode(der)
    needles = (der, pem, b64[:64], base64.urlsafe_b64encode(der).rstrip(b"=")[:64])
    found: list[Path] = []
    for directory, _, names in os.walk(top):
        if Path(directory).is_relative_to(skip):
            continue
        for name in names:
            path = Path(directory) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue  # a socket or a file that vanished
            if any(needle in data for needle in needles):
                found.append(path)
    return found


@pytest.mark.parametrize(
    ("ek", "ak"),
    [
        ("rsa", KeyAlgorithm.ECC_P256),
        ("ecc", KeyAlgorithm.ECC_P256),
        ("rsa", KeyAlgorithm.RSA_2048),
    ],
    ids=["rsa-ek-ecc-ak", "ecc-ek-ecc-ak", "rsa-ek-rsa-ak"],
)
async def test_a_device_enrolls_through_device_attest_01(
    quart_server: RunningServer,
    swtpm_ek_ca: LocalCA,
    swtpm_factory: SwtpmFactory,
    ca: CA,
    tmp_path: Path,
    ek: str,
    ak: KeyAlgorithm,
) -> None:
    trust_swtpm_ek_ca(quart_server, swtpm_ek_ca)
    swtpm = swtpm_factory(ek)
    register(quart_server, swtpm)
    state_dir = tmp_path / "agent"

    # No AK certificate yet: enroll attests first (the CA URL is known).
    enrolled = await run_enroll(quart_server, swtpm, state_dir, ak_algorithm=ak)

    chain = enrolled.enrollment.chain
    leaf = chain[0]
    identifier = device_identifier(enrolled.ak_chain[0])
    assert identities_of_ak_certificate(leaf).permanent_identifiers == (identifier,)
    # The certified key is the TPM key: its public area, and it signs for the certificate.
    key = enrolled.enrollment.key
    assert leaf.public_key() == key.public_key()
    assert leaf.public_key() == public_key_from_tpmt(public_of(key.wrapped))
    leaf_key = leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    leaf_key.verify(enrolled.proof, b"proof", ec.ECDSA(hashes.SHA256()))
    # Issued by the Agent CA, not the Attestation CA that issued the AK certificate.
    assert leaf.issuer != enrolled.ak_chain[0].issuer
    # Marked as TPM-attested for relying parties (docs/ca.md).
    assert Assurance.of(leaf) is Assurance.TPM_ATTESTED

    # In memory only: no file under the test's directories holds the certificate
    # (the CA's own data directory keeps what it issued, as a CA must).
    assert files_holding(leaf, tmp_path, skip=ca.data_dir) == []
    # The scan does find certificates that are stored: the AK certificate is.
    ak_files = files_holding(enrolled.ak_chain[0], tmp_path, skip=ca.data_dir)
    assert sorted(p.name for p in ak_files) == ["ak-chain.pem", "ak.crt"]
    state = AgentState(state_dir)
    names = sorted(p.name for p in state_dir.iterdir())
    assert names == [ACCOUNT_KEY_FILE, "ak-chain.pem", "ak.crt", "ak.priv", "ak.pub", "ek.json"]
    for path in state_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert state.load_chain() == enrolled.ak_chain

    openssl_verify(quart_server.root_path, chain, tmp_path)


async def test_a_second_enrolment_reuses_the_account_and_gets_a_new_key(
    quart_server: RunningServer, device: Swtpm, tmp_path: Path
) -> None:
    state_dir = tmp_path / "agent"
    first = await run_enroll(quart_server, device, state_dir)
    account_key = (state_dir / ACCOUNT_KEY_FILE).read_bytes()
    second = await run_enroll(quart_server, device, state_dir)

    assert (state_dir / ACCOUNT_KEY_FILE).read_bytes() == account_key
    assert first.ak_chain == second.ak_chain  # attested once
    assert second.enrollment.key.public_key() != first.enrollment.key.public_key()
    assert second.enrollment.certificate.serial_number != first.enrollment.certificate.serial_number


async def test_a_device_disabled_and_enabled_again_attests_anew_before_enrolling(
    quart_server: RunningServer, device: Swtpm, tmp_path: Path
) -> None:
    """Disabling revokes the device's AK certificate; enrolling with the CA's URL, the
    agent finds it on the Attestation CA's CRL and attests again first."""
    state_dir = tmp_path / "agent"
    first = await run_enroll(quart_server, device, state_dir)
    urn = register_urn(device)
    inventory = quart_server.authority.inventory
    await trio.to_thread.run_sync(inventory.disable, urn)
    await trio.to_thread.run_sync(inventory.update, urn, {"status": "active"})

    again = await run_enroll(quart_server, device, state_dir)
    assert again.ak_chain[0].serial_number != first.ak_chain[0].serial_number  # attested anew
    record = quart_server.authority.stores.certificates.get_certificate(
        format(first.ak_chain[0].serial_number, "x")
    )
    assert record is not None and record.status == "revoked"


def register_urn(swtpm: Swtpm) -> str:
    with TPM(swtpm.tcti) as tpm:
        return tpm.endorsement_key().urn


async def test_an_identifier_the_ak_certificate_does_not_bind_is_refused(
    quart_server: RunningServer, device: Swtpm, tmp_path: Path
) -> None:
    """The AK certificate is valid, but it binds another identity than the one ordered:
    the server must refuse the attestation, with a reason the agent passes on."""
    state_dir = tmp_path / "agent"
    other = permanent_identifier_value(bytes(32))
    with pytest.raises(ACMEError) as refused:
        await run_enroll(quart_server, device, state_dir, identifier=other)

    error = refused.value
    assert error.problem in {"badAttestationStatement", "rejectedIdentifier", "unauthorized"}, error
    assert error.detail and other in error.detail, error  # names what it refused
    assert str(error).startswith("the ACME server refused"), error
    assert "\n" not in str(error)
    chain = AgentState(state_dir).load_chain()
    assert chain is not None and other not in device_identifier(chain[0])


async def test_cli_enroll_shows_the_certificate_and_writes_nothing(
    quart_server: RunningServer,
    device: Swtpm,
    ca: CA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_dir = tmp_path / "agent"
    common = ["--root", str(quart_server.root_path), "--tcti", device.tcti]
    common += ["--state", str(state_dir)]
    attest_argv = ["agent", "attest", "--ca", quart_server.url, *common]
    assert await trio.to_thread.run_sync(main, attest_argv) == 0
    capsys.readouterr()

    argv = ["agent", "enroll", "--acme", directory_url(quart_server), *common, "--print-pem"]
    assert await trio.to_thread.run_sync(main, argv) == 0

    out = capsys.readouterr().out
    chain = x509.load_pem_x509_certificates(out[out.index("-----BEGIN") :].encode())
    leaf = chain[0]
    ak_chain = AgentState(state_dir).load_chain()
    assert ak_chain is not None
    assert f"PermanentIdentifier:{device_identifier(ak_chain[0])}" in out
    assert f"Serial:       {leaf.serial_number:x}" in out
    for cert in chain:
        assert cert.fingerprint(hashes.SHA256()).hex(":").upper() in out
    assert "devid agent run" in out
    assert files_holding(leaf, tmp_path, skip=ca.data_dir) == []


async def test_cli_enroll_without_an_ak_certificate_says_how_to_get_one(
    swtpm_rsa: Swtpm, swtpm_ek_ca: LocalCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["agent", "enroll", "--acme", "https://127.0.0.1:9/acme/devices/directory"]
    argv += ["--root", str(swtpm_ek_ca.root), "--tcti", swtpm_rsa.tcti]
    argv += ["--state", str(tmp_path / "agent")]

    assert await trio.to_thread.run_sync(main, argv) == 1

    err = capsys.readouterr().err.strip()
    assert err.startswith("devid: there is no AK certificate in") and "\n" not in err
    assert "devid agent attest" in err


def test_cli_enroll_needs_a_directory_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "enroll", "--acme", "", "--root", "root.pem"]) == 1
    assert "pass --acme DIRECTORY_URL" in capsys.readouterr().err


async def test_enroll_refuses_a_server_outside_the_given_root(
    quart_server: RunningServer, device: Swtpm, swtpm_ek_ca: LocalCA, tmp_path: Path
) -> None:
    state_dir = tmp_path / "agent"

    def work() -> None:
        with TPM(device.tcti) as tpm:
            attest(quart_server.url, quart_server.root_path, tpm, state_dir)
            enroll(directory_url(quart_server), swtpm_ek_ca.root, tpm, state_dir)

    with pytest.raises(AgentError, match="cannot reach the ACME server"):
        await trio.to_thread.run_sync(work)


async def test_an_enrolment_checks_the_crl_and_attests_over_its_own_connection(
    quart_server: RunningServer, device: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CRL check and an attestation go through the enrolment's ACME client (one
    connection to the CA), not through clients of their own."""
    import httpx

    import agent.enroll as enroll_module

    seen: list[tuple[str, httpx.Client | None]] = []
    import agent.attestation

    real_attest, real_revoked = agent.attestation.attest, agent.attestation.ak_certificate_revoked

    def attest_spy(*args: Any, client: httpx.Client | None = None, **kwargs: Any) -> Any:
        seen.append(("attest", client))
        return real_attest(*args, client=client, **kwargs)

    def revoked_spy(*args: Any, client: httpx.Client | None = None, **kwargs: Any) -> bool:
        seen.append(("crl", client))
        return real_revoked(*args, client=client, **kwargs)

    monkeypatch.setattr(enroll_module, "attest", attest_spy)
    monkeypatch.setattr(enroll_module, "ak_certificate_revoked", revoked_spy)
    state_dir = tmp_path / "agent"
    await run_enroll(quart_server, device, state_dir)  # no AK certificate yet: attests
    await run_enroll(quart_server, device, state_dir)  # checks the stored one's CRL
    assert [what for what, _ in seen] == ["attest", "crl"]
    clients = [client for _, client in seen]
    assert all(isinstance(client, httpx.Client) for client in clients)
    assert clients[0] is not clients[1]  # one per enrolment, closed with it
    assert all(client is not None and client.is_closed for client in clients)
