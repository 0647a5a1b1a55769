"""agent.attestation end to end: a real swtpm against the real quart host's Attestation CA."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.attestation import AgentError, attest, check_chain
from agent.state import AgentState
from agent.tpm import TPM, KeyAlgorithm, public_of
from engine.tpm import public_key_from_tpmt
from hosts.cli import main
from tests.conftest import RunningServer

if TYPE_CHECKING:
    from tests.swtpm import LocalCA, Swtpm

pytest_plugins = ["tests.swtpm"]


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


async def run_attest(
    server: RunningServer, swtpm: Swtpm, state: Path, **kwargs: object
) -> list[x509.Certificate]:
    def work() -> list[x509.Certificate]:
        with TPM(swtpm.tcti) as tpm:
            return attest(server.url, server.root_path, tpm, state, **kwargs)  # type: ignore[arg-type]

    return await trio.to_thread.run_sync(work)


def uris(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


@pytest.mark.parametrize("ak_algorithm", list(KeyAlgorithm), ids=lambda a: a.value)
async def test_attest_earns_an_ak_certificate_bound_to_the_ek(
    server: RunningServer,
    swtpm: Swtpm,
    swtpm_ek_ca: LocalCA,
    tmp_path: Path,
    ak_algorithm: KeyAlgorithm,
) -> None:
    trust_swtpm_ek_ca(server, swtpm_ek_ca)
    urn = register(server, swtpm)
    state_dir = tmp_path / "agent"

    chain = await run_attest(server, swtpm, state_dir, ak_algorithm=ak_algorithm)

    state = AgentState(state_dir)
    stored = state.load_ak()
    assert stored is not None
    ak_key = public_key_from_tpmt(public_of(stored))
    spki = ak_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert (
        chain[0].public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == spki
    )
    assert urn in uris(chain[0])
    assert state.load_chain() == chain
    assert x509.load_pem_x509_certificate(state.certificate_path.read_bytes()) == chain[0]
    record = state.load_ek()
    assert record is not None and record.urn == urn


async def test_the_state_directory_is_private_and_holds_no_clear_private_key(
    server: RunningServer, swtpm_rsa: Swtpm, swtpm_ek_ca: LocalCA, tmp_path: Path
) -> None:
    trust_swtpm_ek_ca(server, swtpm_ek_ca)
    register(server, swtpm_rsa)
    state_dir = tmp_path / "agent"
    await run_attest(server, swtpm_rsa, state_dir)
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    names = sorted(p.name for p in state_dir.iterdir())
    assert names == ["ak-chain.pem", "ak.crt", "ak.priv", "ak.pub", "ek.json"]
    for path in state_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert b"PRIVATE KEY" not in path.read_bytes()


async def test_an_unregistered_device_gets_the_servers_reason(
    server: RunningServer, swtpm_rsa: Swtpm, swtpm_ek_ca: LocalCA, tmp_path: Path
) -> None:
    trust_swtpm_ek_ca(server, swtpm_ek_ca)
    with pytest.raises(AgentError, match=r"refused \(403\).*not registered"):
        await run_attest(server, swtpm_rsa, tmp_path / "agent")
    assert not (tmp_path / "agent" / "ak.pub").exists()


async def test_an_ek_certificate_from_an_untrusted_ca_is_refused(
    server: RunningServer, swtpm_ecc: Swtpm, tmp_path: Path
) -> None:
    register(server, swtpm_ecc)  # registered, but swtpm's local CA is not an EK root
    with pytest.raises(AgentError, match=r"refused \(403\).*not trusted"):
        await run_attest(server, swtpm_ecc, tmp_path / "agent")


async def test_a_ca_outside_the_given_root_is_not_trusted(
    server: RunningServer, swtpm_rsa: Swtpm, swtpm_ek_ca: LocalCA, tmp_path: Path
) -> None:
    def work() -> None:
        with TPM(swtpm_rsa.tcti) as tpm:
            attest(server.url, swtpm_ek_ca.root, tpm, tmp_path / "agent")

    with pytest.raises(AgentError, match="cannot reach the Attestation CA"):
        await trio.to_thread.run_sync(work)


def test_a_chain_for_another_key_or_root_is_rejected() -> None:
    import trustme

    authority = trustme.CA()
    leaf = authority.issue_cert("device.test")
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    root = x509.load_pem_x509_certificate(authority.cert_pem.bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    check_chain([cert], spki, [root])
    with pytest.raises(AgentError, match="different key"):
        check_chain([cert], spki[:-1] + bytes([spki[-1] ^ 1]), [root])
    stranger = x509.load_pem_x509_certificate(trustme.CA().cert_pem.bytes())
    with pytest.raises(AgentError, match="does not lead to the trusted root"):
        check_chain([cert], spki, [stranger])


async def test_cli_attest_keeps_the_chain_and_says_where(
    server: RunningServer,
    swtpm_ecc: Swtpm,
    swtpm_ek_ca: LocalCA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trust_swtpm_ek_ca(server, swtpm_ek_ca)
    register(server, swtpm_ecc)
    state_dir = tmp_path / "agent"
    argv = ["agent", "attest", "--ca", server.url, "--root", str(server.root_path)]
    argv += ["--tcti", swtpm_ecc.tcti, "--state", str(state_dir)]

    assert await trio.to_thread.run_sync(main, argv) == 0

    out = capsys.readouterr().out
    assert str(state_dir / "ak-chain.pem") in out and str(state_dir / "ak.crt") in out
    assert len(x509.load_pem_x509_certificates((state_dir / "ak-chain.pem").read_bytes())) == 2


async def test_cli_attest_refusal_is_one_line_on_stderr(
    server: RunningServer, swtpm_rsa: Swtpm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["agent", "attest", "--ca", server.url, "--root", str(server.root_path)]
    argv += ["--tcti", swtpm_rsa.tcti, "--state", str(tmp_path / "agent")]

    assert await trio.to_thread.run_sync(main, argv) == 1

    err = capsys.readouterr().err.strip()
    assert err.startswith("devid: the Attestation CA refused (403)") and "\n" not in err
