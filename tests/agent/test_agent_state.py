"""agent.state: the agent's private state directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from agent.state import AgentError, AgentState, EKRecord, WrappedKey


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_directory_is_created_0700_and_files_0600(tmp_path: Path) -> None:
    state = AgentState(tmp_path / "a" / "state")
    state.save_ak(WrappedKey(b"\x00\x02pub", b"\x00\x02prv"))
    assert mode(state.directory) == 0o700
    assert {p.name: mode(p) for p in state.directory.iterdir()} == {
        "ak.pub": 0o600,
        "ak.priv": 0o600,
    }
    assert state.load_ak() == WrappedKey(b"\x00\x02pub", b"\x00\x02prv")


def test_a_directory_others_can_read_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    AgentState(directory).ensure()
    assert mode(directory) == 0o700


def test_an_empty_directory_holds_no_ak_ek_or_chain(tmp_path: Path) -> None:
    state = AgentState(tmp_path)
    assert (state.load_ak(), state.load_ek(), state.load_chain()) == (None, None, None)


def test_half_an_ak_is_an_error(tmp_path: Path) -> None:
    state = AgentState(tmp_path)
    state.save_ak(WrappedKey(b"pub", b"prv"))
    (tmp_path / "ak.priv").unlink()
    with pytest.raises(AgentError, match="half of the AK"):
        state.load_ak()


def test_the_ek_record_round_trips_and_refuses_garbage(tmp_path: Path) -> None:
    state = AgentState(tmp_path)
    record = EKRecord("urn:ek:sha256:AAAA", "H-3", 0x01C00016)
    state.save_ek(record)
    assert state.load_ek() == record
    (tmp_path / "ek.json").write_text('{"urn": 1}')
    with pytest.raises(AgentError, match="not an EK record"):
        state.load_ek()


def test_the_chain_is_kept_as_pem_with_the_leaf_alone_in_ak_crt(tmp_path: Path) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("ak.test")
    chain = [x509.load_pem_x509_certificate(p.bytes()) for p in issued.cert_chain_pems]
    chain.append(x509.load_pem_x509_certificate(ca.cert_pem.bytes()))
    state = AgentState(tmp_path / "s")
    state.save_chain(chain)
    assert state.load_chain() == chain
    assert x509.load_pem_x509_certificates(state.certificate_path.read_bytes()) == chain[:1]
    with pytest.raises(AgentError, match="empty"):
        state.save_chain([])
