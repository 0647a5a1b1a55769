"""The README's attestation walkthrough, end to end, by subprocess as an operator types it.

``devid init`` -> ``devid agent swtpm start`` -> the EK CA bundle into ``DATA/ek-roots/``
-> ``devid serve`` -> ``devid ca root`` -> ``devid agent info --json`` -> ``devid device
add`` -> ``devid agent attest`` -> ``openssl x509 -text`` on the AK certificate; then the
device is disabled and attesting again is refused. swtpm and the server always stop.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent.swtpm import free_port_pair

from .helpers import devid_serve, free_port

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.swtpm import SwtpmCLI

pytest_plugins = ["tests.swtpm"]

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def printed(stdout: str, label: str) -> str:
    """The value after ``label:`` on its own line of a command's output."""
    match = re.search(rf"^\s*{re.escape(label)}:\s+(\S+)", stdout, re.MULTILINE)
    assert match, f"no {label!r} in:\n{stdout}"
    return match.group(1)


def test_readme_walkthrough(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    devid = swtpm_cli.devid
    data, tpm, state = tmp_path / "data", tmp_path / "tpm", tmp_path / "agent-state"

    # On the CA host: a new CA.
    init = devid("init", "--data", data)
    fingerprint = printed(init.stdout, "root fingerprint")

    # The "device": a swtpm with an EK certificate from its own small CA.
    started = swtpm_cli.start(tpm, free_port_pair())
    tcti = printed(started.stdout, "TCTI")
    bundle = Path(printed(started.stdout, "EK CA bundle"))
    assert bundle.is_file()

    # The CA trusts that EK CA: every PEM in DATA/ek-roots/ is loaded at start.
    (data / "ek-roots").mkdir(exist_ok=True)
    shutil.copy(bundle, data / "ek-roots" / "swtpm.pem")

    port = free_port()
    url = f"https://127.0.0.1:{port}"
    with devid_serve(data, port, tmp_path / "serve.log", root=data / "certs" / "root_ca.crt"):
        root = tmp_path / "root.crt"
        devid("ca", "root", root, "--fingerprint", fingerprint, "--ca-url", url)

        # The operator registers the device by its EK URN.
        info = json.loads(devid("agent", "info", "--tcti", tcti, "--json").stdout)
        urn = info["ek"]
        assert urn.startswith("urn:ek:sha256:")
        added = devid("device", "add", "--data", data, "--ek", urn, "--name", "demo-laptop")
        assert urn in added.stdout

        # The device attests and keeps its AK certificate in the state directory.
        attest = ("agent", "attest", "--ca", url, "--root", root, "--tcti", tcti, "--state", state)
        attested = devid(*attest)
        ak_certificate = Path(printed(attested.stdout, "AK certificate"))
        assert ak_certificate == state / "ak.crt"
        assert f"openssl x509 -in {ak_certificate} -noout -text" in attested.stdout

        text = subprocess.run(
            ["openssl", "x509", "-in", str(ak_certificate), "-noout", "-text"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert re.search(r"Extended Key Usage:\s*\n\s*2\.23\.133\.8\.3\s*\n", text), text
        assert "Subject Alternative Name: critical" in text
        san = text.split("Subject Alternative Name: critical", 1)[1].splitlines()[1]
        # The TPM's manufacturer, model and firmware version (TCG attributes, directoryName).
        assert "2.23.133.2.1=id:" in san  # tcg-at-tpmManufacturer
        assert "2.23.133.2.2=swtpm" in san  # tcg-at-tpmModel
        assert "2.23.133.2.3=id:" in san  # tcg-at-tpmVersion
        assert "othername: Permanent Identifier" in san  # RFC 4043, the EK's digest
        assert f"URI:{urn}" in san
        assert re.search(r"Subject:\s*\n", text), text  # empty subject

        # A disabled device is refused, with one line that says why.
        devid("device", "disable", "--data", data, urn)
        refused = devid(*attest, check=False)
        assert refused.returncode != 0, refused.stdout
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert lines[0].startswith("devid: ")
        assert "disabled" in lines[0]
        assert "Traceback" not in refused.stdout + refused.stderr

    swtpm_cli.stop(tpm)
    assert swtpm_cli.status(tpm).returncode == 3
