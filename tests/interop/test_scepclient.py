"""SCEP (RFC 8894) against a real ``devid serve``, on both hosts: micromdm's
``scepclient`` (Debian ``scep`` 2.1, Go) and the SCEP client of ``scep_client.py``.

One CA is made for the module (``devid init``, a static challenge file, three SCEP
provisioners: ``mdm`` with one-time challenges and ``allow_des``, ``strict`` without
it, ``gated`` with manual approval), their RA certificates made once, and the data
directory copied for each host, so the quart and raw hosts serve the same CA and RA
and their answers can be compared.

What ``scepclient`` 2.1 does, read from its source (cmd/scepclient, scep/scep.go):
it keeps its CSR in ``csr.pem`` beside the key and derives the transactionID from the
key; while no ``-certificate`` file exists it signs a PKCSReq with a self-signed
``self.pem``, and once the certificate file exists it sends a RenewalReq signed by
that certificate, without a challenge, under the same transactionID. It encrypts the
CSR with single DES-CBC, always, to the certificate ``-ca-fingerprint`` picks out of
GetCACert's (without it, devid's EC CA certificates make it panic), so only a
provisioner with ``allow_des = true`` takes it. The enrolment, one-time challenge,
renewal, revocation and refusal flows run through it; ``scep_client.py`` covers what
it cannot do: AES requests, CertPoll, and manual approval (see that test).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.assurance import Assurance
from engine.scep import FailInfo, PKIStatus, Signer
from hosts.testing.servers import HOSTS, DevidServer, run_devid

from .scep_client import SCEPClient, new_key, self_signed
from .support import client_env, need, openssl_verify, run, shown

CHALLENGE = "correct-horse-battery-staple"
STATIC = "mdm"  # static challenge file, one-time challenges, single DES allowed
STRICT = "strict"  # static challenge file, AES (no allow_des)
GATED = "gated"  # static challenge file, approval = "manual"
PROVISIONERS = f"""
[[provisioners]]
type = "SCEP"
name = "{STATIC}"
challenge_file = "secrets/scep-challenge"
one_time_challenges = true
allow_des = true

[[provisioners]]
type = "SCEP"
name = "{STRICT}"
challenge_file = "secrets/scep-challenge"

[[provisioners]]
type = "SCEP"
name = "{GATED}"
challenge_file = "secrets/scep-challenge"
approval = "manual"
"""
# A pending request is polled this often, this many times at most.
POLL_EVERY = 0.2
POLLS = 50


@attrs.frozen
class Served:
    """One host serving its copy of the module's CA."""

    host: str
    data: Path
    url: str
    root: Path
    log: Path

    def client(self, provisioner: str = STATIC) -> SCEPClient:
        return SCEPClient(self.url, provisioner, self.root)

    def devid(self, *args: str) -> str:
        return run_devid(*args, "--data", self.data).stdout

    def devid_json(self, *args: str) -> Any:
        return json.loads(self.devid(*args, "--json"))

    def certificates(self, provisioner: str) -> list[dict[str, Any]]:
        listed = self.devid_json("cert", "list", "--provisioner", provisioner)
        return list(listed["certificates"])

    def subjects(self, provisioner: str) -> list[str]:
        return [c["subject"] for c in self.certificates(provisioner)]

    def transactions(self) -> list[dict[str, Any]]:
        return list(self.devid_json("scep", "requests"))


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("scep-ca") / "data"
    run_devid("init", "--data", data)
    (data / "secrets" / "scep-challenge").write_text(CHALLENGE + "\n")
    with (data / "devid.toml").open("a") as config:
        config.write(PROVISIONERS)
    for name in (STATIC, STRICT, GATED):  # make each RA now, so both copies share it
        run_devid("scep", "ra", name, "--data", data)
    return data


@pytest.fixture(scope="module")
def hosts(ca_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    """Both hosts, started together, each on its own copy of the CA."""
    launched: list[tuple[str, Path, Path, DevidServer]] = []
    try:
        for host in HOSTS:
            workdir = tmp_path_factory.mktemp(f"scep-{host}")
            data = workdir / "data"
            shutil.copytree(ca_dir, data)
            log = workdir / "serve.log"
            launched.append((host, data, log, DevidServer.launch(data, log, host=host)))
        served = {}
        for host, data, log, server in launched:
            server.wait_ready()
            served[host] = Served(host, data, server.url, server.root_path, log)
        yield served
    finally:
        for *_, server in launched:
            server.stop()


@pytest.fixture(params=HOSTS)
def served(request: pytest.FixtureRequest, hosts: dict[str, Served]) -> Served:
    return hosts[str(request.param)]


def common_name(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def issued(reply: Any) -> x509.Certificate:
    assert reply.status == PKIStatus.SUCCESS, (reply.fail_info, reply.fail_text)
    (certificate,) = reply.certificates
    assert isinstance(certificate, x509.Certificate)
    return certificate


def refused(reply: Any, info: FailInfo = FailInfo.BAD_REQUEST) -> str:
    assert reply.status == PKIStatus.FAILURE, reply
    assert reply.fail_info == info, (reply.fail_info, reply.fail_text)
    assert not reply.certificates
    return str(reply.fail_text)


def check_certificate(served: Served, certificate: x509.Certificate, tmp_path: Path) -> None:
    """What a device relies on: a chain to the served root through the TLS CA, the
    mdm-challenge assurance policy, clientAuth, and the CA's record of it."""
    leaf = tmp_path / f"{certificate.serial_number:x}.pem"
    leaf.write_bytes(certificate.public_bytes(Encoding.PEM))
    chain = tmp_path / "tls_ca.pem"
    shutil.copy(served.data / "certs" / "tls_ca.crt", chain)
    openssl_verify(served.root, chain, leaf)
    tls_ca = x509.load_pem_x509_certificate(chain.read_bytes())
    assert certificate.issuer == tls_ca.subject
    policies = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert Assurance.MDM_CHALLENGE.oid in [p.policy_identifier for p in policies]
    ekus = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in list(ekus)
    serials = [int(c["serialNumber"]) for c in served.certificates(STATIC)]
    assert certificate.serial_number in serials


# --- micromdm's scepclient -------------------------------------------------------------------


def ra_fingerprint(served: Served, provisioner: str = STATIC) -> str:
    """The RA certificate's SHA-256, as the README has it printed for ``-ca-fingerprint``."""
    fingerprint = served.devid("scep", "ra", provisioner, "--fingerprint").strip()
    ra = served.client(provisioner).ra().public_bytes(Encoding.DER)
    assert fingerprint == hashlib.sha256(ra).hexdigest()
    return fingerprint


def scepclient(
    served: Served, device: Path, *args: str, provisioner: str = STATIC
) -> subprocess.CompletedProcess[str]:
    """One ``scepclient`` run for the device whose files are in *device*: an enrolment
    while ``cert.pem`` is missing, a renewal signed by it once it exists."""
    device.mkdir(parents=True, exist_ok=True)
    argv = ["scepclient", "-server-url", f"{served.url}/scep/{provisioner}"]
    argv += ["-private-key", str(device / "key.pem"), "-certificate", str(device / "cert.pem")]
    argv += ["-ca-fingerprint", ra_fingerprint(served, provisioner), *args]
    # Go's crypto/x509 takes its trusted roots from SSL_CERT_FILE on Linux.
    return run(argv, client_env(SSL_CERT_FILE=str(served.root)), device, timeout=30)


def enrolled(result: subprocess.CompletedProcess[str], device: Path) -> x509.Certificate:
    assert result.returncode == 0, shown(result)
    return x509.load_pem_x509_certificate((device / "cert.pem").read_bytes())


FAIL_INFO_NAMES = {FailInfo.BAD_ALG: "badAlg", FailInfo.BAD_REQUEST: "badRequest"}


def failed(result: subprocess.CompletedProcess[str], request: str, info: FailInfo) -> None:
    """scepclient got a CertRep FAILURE with *info*, verified against the RA."""
    assert result.returncode == 1, shown(result)
    name = {"PKCSReq": 19, "RenewalReq": 17}[request]
    failure = f"failInfo: {FAIL_INFO_NAMES[info]} ({int(info)})"
    text = f"{request} ({name}) request failed, {failure}"
    assert text in result.stdout + result.stderr, shown(result)


def stored_nothing(served: Served, cn: str, provisioner: str = STATIC) -> None:
    assert f"CN={cn}" not in served.subjects(provisioner)
    # A transaction's subject is the CSR's: scepclient's adds OU, O and C to the CN.
    assert not [t for t in served.transactions() if f"CN={cn}" in t["subject"].split(",")]


def evidence(served: Served, certificate: x509.Certificate) -> dict[str, Any]:
    shown_json = served.devid_json("cert", "show", str(certificate.serial_number))
    return dict(shown_json["certificate"]["evidence"])


def status(served: Served, certificate: x509.Certificate) -> str:
    for listed in served.certificates(STATIC):
        if int(listed["serialNumber"]) == certificate.serial_number:
            return str(listed["status"])
    raise AssertionError(f"serial {certificate.serial_number} is not stored")


@need("scepclient")
def test_scepclient_enrols_with_the_static_challenge(served: Served, tmp_path: Path) -> None:
    cn = f"go-{served.host}"
    device = tmp_path / "device"

    certificate = enrolled(scepclient(served, device, "-cn", cn, "-challenge", CHALLENGE), device)

    assert common_name(certificate) == cn
    check_certificate(served, certificate, tmp_path)
    assert evidence(served, certificate)["challenge"] == "static"


@need("scepclient")
def test_scepclient_one_time_challenge_enrols_once(served: Served, tmp_path: Path) -> None:
    cn = f"go-once-{served.host}"
    made = served.devid_json("scep", "challenge", STATIC, "--subject", cn)

    first = tmp_path / "first"
    certificate = enrolled(
        scepclient(served, first, "-cn", cn, "-challenge", made["challenge"]), first
    )
    assert common_name(certificate) == cn
    assert evidence(served, certificate)["challenge"] == "one-time"
    # Another device (another key, so another transactionID) with the used challenge.
    second = tmp_path / "second"
    failed(
        scepclient(served, second, "-cn", cn, "-challenge", made["challenge"]),
        "PKCSReq",
        FailInfo.BAD_REQUEST,
    )

    assert not (second / "cert.pem").exists()
    assert served.subjects(STATIC).count(f"CN={cn}") == 1


@need("scepclient")
def test_scepclient_renews_until_revoked(served: Served, tmp_path: Path) -> None:
    cn = f"go-renew-{served.host}"
    device = tmp_path / "device"
    first = enrolled(scepclient(served, device, "-cn", cn, "-challenge", CHALLENGE), device)

    # The same files, no challenge: a RenewalReq signed by cert.pem, under the
    # transactionID of the enrolment (the same key), and a new certificate.
    renewed = enrolled(scepclient(served, device, "-cn", cn), device)
    assert renewed.subject == first.subject
    assert renewed.serial_number != first.serial_number
    assert renewed.public_key() == first.public_key()
    proof = evidence(served, renewed)
    assert proof["challenge"] == "renewal"
    assert int(proof["renewed_serial"], 16) == first.serial_number
    assert status(served, first) == "active"  # renewing revokes nothing

    revoke = ("ca", "revoke", str(renewed.serial_number), "--reason", "key compromise")
    served.devid(*revoke, "--ca-url", served.url, "--root", str(served.root))
    failed(scepclient(served, device, "-cn", cn), "RenewalReq", FailInfo.BAD_REQUEST)
    current = x509.load_pem_x509_certificate((device / "cert.pem").read_bytes())
    assert current.serial_number == renewed.serial_number
    assert served.subjects(STATIC).count(f"CN={cn}") == 2


@need("scepclient")
def test_scepclient_wrong_challenge_stores_nothing(served: Served, tmp_path: Path) -> None:
    cn = f"go-intruder-{served.host}"
    device = tmp_path / "device"

    result = scepclient(served, device, "-cn", cn, "-challenge", "not-the-challenge-at-all")

    failed(result, "PKCSReq", FailInfo.BAD_REQUEST)
    assert not (device / "cert.pem").exists()
    stored_nothing(served, cn)


@need("scepclient")
def test_scepclient_is_refused_without_allow_des(served: Served, tmp_path: Path) -> None:
    cn = f"go-strict-{served.host}"
    device = tmp_path / "device"

    result = scepclient(served, device, "-cn", cn, "-challenge", CHALLENGE, provisioner=STRICT)

    # The signed, DES-encrypted PKCSReq was read as far as its cipher: badAlg.
    failed(result, "PKCSReq", FailInfo.BAD_ALG)
    assert not (device / "cert.pem").exists()
    assert "content encryption des-cbc is not allowed" in served.log.read_text()
    stored_nothing(served, cn, STRICT)


# --- enrolment flows -----------------------------------------------------------------------


def test_static_challenge_issues_a_certificate(served: Served, tmp_path: Path) -> None:
    client = served.client()
    assert {"POSTPKIOperation", "AES", "SHA-256", "Renewal"} <= set(client.ca_caps())
    cn = f"laptop-{served.host}"

    certificate = issued(client.enrol(new_key(), cn, CHALLENGE))

    assert common_name(certificate) == cn
    check_certificate(served, certificate, tmp_path)


@pytest.mark.parametrize("challenge", ["not-the-challenge-at-all", None])
def test_wrong_or_missing_challenge_stores_nothing(served: Served, challenge: str | None) -> None:
    cn = f"intruder-{served.host}-{challenge is None}"
    transaction = os.urandom(10).hex()

    refused(served.client().enrol(new_key(), cn, challenge, transaction))

    assert f"CN={cn}" not in served.subjects(STATIC)
    assert transaction not in [t["transactionID"] for t in served.transactions()]


def test_renewal_needs_no_challenge_until_revoked(served: Served) -> None:
    client = served.client()
    key = new_key()
    cn = f"router-{served.host}"
    first = issued(client.enrol(key, cn, CHALLENGE))

    renewed = issued(client.renew(key, first))
    assert renewed.subject == first.subject
    assert renewed.serial_number != first.serial_number
    # The server took it as a renewal (no challenge was sent, so nothing else could pass).
    methods = [t["challenge"] for t in served.transactions() if t["subject"] == f"CN={cn}"]
    assert sorted(methods) == ["renewal", "static"], methods

    revoke = ("ca", "revoke", str(renewed.serial_number), "--reason", "key compromise")
    served.devid(*revoke, "--ca-url", served.url, "--root", str(served.root))
    text = refused(client.renew(key, renewed))
    assert "revoked" in text, text
    assert f"CN={cn}" in served.subjects(STATIC)


def test_manual_approval_waits_for_the_operator(served: Served) -> None:
    """Through ``scep_client.py``: scepclient answers PENDING by sleeping 30 seconds
    before it sends its PKCSReq again, which would make this test take a minute per
    host; this client polls with CertPoll (which scepclient does not send) and then
    resends the PKCSReq as scepclient would, under the same transaction."""
    client = served.client(GATED)
    key = new_key()
    cn = f"printer-{served.host}"
    signer = Signer(self_signed(key, cn), key)
    transaction = os.urandom(10).hex()

    assert client.enrol(key, cn, CHALLENGE, transaction, signer).status == PKIStatus.PENDING
    assert client.poll(signer, transaction).status == PKIStatus.PENDING
    pending = served.devid_json("scep", "pending", "--provisioner", GATED)
    assert transaction in [p["transactionID"] for p in pending], pending

    served.devid("scep", "approve", GATED, transaction)
    for _ in range(POLLS):
        reply = client.poll(signer, transaction)
        if reply.status != PKIStatus.PENDING:
            break
        time.sleep(POLL_EVERY)
    certificate = issued(reply)
    assert common_name(certificate) == cn
    # scepclient polls by sending its PKCSReq again: the same transaction's certificate.
    resent = issued(client.enrol(key, cn, CHALLENGE, transaction, signer))
    assert resent.serial_number == certificate.serial_number
    assert transaction not in [
        p["transactionID"] for p in served.devid_json("scep", "pending", "--provisioner", GATED)
    ]


def test_both_hosts_answer_alike(hosts: dict[str, Served]) -> None:
    """Same CA and RA on both: the same capabilities and CA certificates, and the same
    refusal of a wrong challenge."""
    quart, raw = (hosts[h].client() for h in HOSTS)
    assert quart.ca_caps() == raw.ca_caps()
    assert quart.get("GetCACert").content == raw.get("GetCACert").content
    a, b = (c.enrol(new_key(), "same", "not-the-challenge-at-all") for c in (quart, raw))
    assert (a.status, a.fail_info, a.fail_text) == (b.status, b.fail_info, b.fail_text)
