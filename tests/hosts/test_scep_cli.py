"""``devid scep challenge|pending|requests|approve|reject|ra`` on a CA data directory, as
an operator runs them (subprocesses), against requests sent in process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cryptography import x509

from engine.scep import MessageType, PKIStatus, issuer_and_subject
from hosts.core.authority import Authority
from hosts.testing.servers import clean_env
from tests.conftest import CA

from .helpers import run_devid
from .scep_support import CHALLENGE, PROVISIONER, add_scep_provisioner, in_process_client, scep_csr


def devid(ca: CA, *args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**clean_env(), "DEVID_PASSWORD": ca.password.decode()}
    result = run_devid("scep", *args, "--data", ca.data_dir, check=False, env=env)
    if ok:
        assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    else:
        assert result.returncode in (1, 2), (result.args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    return result


def test_the_operator_makes_challenges_and_decides_pending_requests(ca: CA) -> None:
    add_scep_provisioner(ca.data_dir, one_time_challenges=True, approval="manual")
    made = devid(ca, "challenge", PROVISIONER, "--subject", "dev1", "--expires", "2h")
    challenge = made.stdout.splitlines()[0]
    assert "for subject 'dev1'" in made.stdout and "shown only now" in made.stdout
    as_json = json.loads(devid(ca, "challenge", PROVISIONER, "--json").stdout)
    assert as_json["subject"] is None and as_json["challenge"]
    assert "no pending requests" in devid(ca, "pending").stdout

    authority = Authority.load(ca.data_dir, ca.password)
    try:
        client = in_process_client(authority)
        assert client.call("tx-cli", scep_csr(client.key, "dev1", challenge)).status is (
            PKIStatus.PENDING
        )
        other = in_process_client(authority, 1, "dev2")
        assert other.call("tx-no", scep_csr(other.key, "dev2", CHALLENGE)).status is (
            PKIStatus.PENDING
        )
        pending = devid(ca, "pending").stdout
        assert "tx-cli" in pending and "CN=dev1" in pending and "one-time" in pending
        listed = json.loads(devid(ca, "pending", "--provisioner", PROVISIONER, "--json").stdout)
        assert {r["transactionID"] for r in listed} == {"tx-cli", "tx-no"}

        approved = devid(ca, "approve", PROVISIONER, "tx-cli").stdout
        assert "approved tx-cli" in approved
        rejected = devid(ca, "reject", PROVISIONER, "tx-no", "--reason", "unknown box").stdout
        assert "unknown box" in rejected
        again = devid(ca, "approve", PROVISIONER, "tx-cli", ok=False)
        assert "is issued, not pending" in again.stderr
        missing = devid(ca, "approve", PROVISIONER, "tx-missing", ok=False)
        assert "no SCEP request 'tx-missing'" in missing.stderr

        poll = issuer_and_subject(
            authority.issuers["tls"].certificate.subject, x509.Name.from_rfc4514_string("CN=dev1")
        )
        got = client.call("tx-cli", poll, MessageType.CERT_POLL)
        assert got.status is PKIStatus.SUCCESS
        issued = json.loads(devid(ca, "requests", "--status", "issued", "--json").stdout)
        assert [r["serial"] for r in issued] == [format(got.certificates[0].serial_number, "x")]
        assert issued[0]["decidedBy"] == "cli"
    finally:
        authority.close()


def test_ra_prints_the_chain_and_errors_are_clear(ca: CA) -> None:
    add_scep_provisioner(ca.data_dir)
    printed = devid(ca, "ra", PROVISIONER).stdout
    certificates = x509.load_pem_x509_certificates(printed.encode())
    assert certificates[0].subject.rfc4514_string() == "CN=SCEP RA mdm,O=devid"
    assert len(certificates) == 3
    unknown = devid(ca, "ra", "nobody", ok=False)
    assert "no SCEP provisioner named 'nobody'" in unknown.stderr
    no_one_time = devid(ca, "challenge", PROVISIONER, ok=False)
    assert "one_time_challenges = true" in no_one_time.stderr
    bad = devid(ca, "challenge", PROVISIONER, "--expires", "soon", ok=False)
    assert "--expires" in bad.stderr
