"""The SCEP server answers every PKIOperation body with a CertRep signed by its RA.

Whatever the bytes (random, or a valid request with a few changes), the answer reads
as a CertRep; a FAILURE stores nothing; only a request whose signature, encryption,
CSR and challenge all still hold can get a certificate, and then exactly one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.scep import FailInfo, PKIStatus, read_cert_rep
from hosts.core.authority import Authority
from hosts.core.init import init_data_dir
from hosts.core.secrets import Password
from tests.hosts.scep_support import (
    CHALLENGE,
    PROVISIONER,
    SCEPClient,
    add_scep_provisioner,
    counts,
    in_process_client,
    scep_csr,
)

from .mutations import mutated

PASSWORD = b"scep property password"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authority]:
    directory: Path = tmp_path_factory.mktemp("scep-properties") / "ca"
    init_data_dir(directory, Password(PASSWORD, "test"))
    add_scep_provisioner(directory)
    authority = Authority.load(directory, PASSWORD)
    yield authority
    authority.close()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def client(authority: Authority) -> SCEPClient:
    return in_process_client(authority)


@pytest.fixture(scope="module")
def valid(client: SCEPClient) -> list[bytes]:
    """Valid requests, never sent as they are (each transactionID is fresh)."""
    return [
        client.request(f"tx-valid-{i}", scep_csr(client.key, f"dev{i}", CHALLENGE))
        for i in range(3)
    ]


def _answer(authority: Authority, client: SCEPClient, body: bytes) -> None:
    before = counts(authority)
    reply = read_cert_rep(authority.scep.pki_operation(PROVISIONER, body), trusted=[client.ra])
    after = counts(authority)
    if reply.status is PKIStatus.FAILURE:
        assert reply.fail_info in FailInfo
        assert reply.fail_text
        assert after == before
    else:
        # A change the signature does not cover (outside the signed attributes and
        # content) leaves a valid request: at most one certificate per transactionID.
        assert reply.status is PKIStatus.SUCCESS
        assert after["certificates"] - before["certificates"] <= 1


@given(body=st.binary(max_size=4096))
def test_any_bytes_get_a_certrep(authority: Authority, client: SCEPClient, body: bytes) -> None:
    _answer(authority, client, body)


@given(data=st.data())
def test_mutated_requests_get_a_certrep(
    authority: Authority, client: SCEPClient, valid: list[bytes], data: st.DataObject
) -> None:
    _answer(authority, client, data.draw(mutated(valid)))
