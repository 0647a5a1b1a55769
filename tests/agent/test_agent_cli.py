"""`devid agent info`: what an operator needs to register a device, EK URN first."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from engine.inventory import ek_urn
from hosts.cli import main

if TYPE_CHECKING:
    from tests.swtpm import Swtpm

pytest_plugins = ["tests.swtpm"]


def ek_certificate_urn(swtpm: Swtpm) -> str:
    from agent.tpm import TPM

    with TPM(swtpm.tcti) as tpm:
        (cert,) = tpm.ek_certificates()
    assert cert.certificate is not None
    return ek_urn(cert.certificate.public_key())


def test_info_starts_with_the_ek_urn_and_ends_with_the_register_command(
    swtpm: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    urn = ek_certificate_urn(swtpm)
    assert main(["agent", "info", "--tcti", swtpm.tcti]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["EK", "URN:", urn]
    assert any("CN=unknown" in line for line in lines)  # EK certificate subject
    assert any("CN=swtpm-localca" in line for line in lines)  # its issuer
    assert any(line.split()[:3] == ["TPM", "manufacturer:", "IBM"] for line in lines)
    assert lines[-1].strip() == f"devid device add --ek {urn}"


def test_info_json_is_machine_readable(
    swtpm_ecc: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["agent", "info", "--tcti", swtpm_ecc.tcti, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert next(iter(record)) == "ek"
    assert record["ek"] == ek_certificate_urn(swtpm_ecc)
    assert record["ekTemplate"] == "H-3"
    assert record["ekCertificate"]["nvIndex"] == "0x01c00016"
    assert record["tpm"]["manufacturerId"] == 0x49424D00
    assert record["register"] == f"devid device add --ek {record['ek']}"


def test_info_without_ek_certificate_still_gives_the_urn(
    swtpm_no_ek_cert: Swtpm, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["agent", "info", "--tcti", swtpm_no_ek_cert.tcti, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["ekCertificate"] is None and record["ekTemplate"] == "L-1"
    assert record["ek"].startswith("urn:ek:sha256:")


def test_an_unreachable_tpm_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "info", "--tcti", "swtpm:host=127.0.0.1,port=1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith("devid: cannot open the TPM") and "\n" not in err


def test_attest_without_a_ca_url_says_what_is_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEVID_CA_URL", raising=False)
    assert main(["agent", "attest", "--root", "root.pem", "--ca", ""]) == 1
    assert "--ca URL" in capsys.readouterr().err
