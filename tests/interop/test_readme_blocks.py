"""The README's ACME blocks, run exactly as written, in a shell, end to end.

"Get a certificate with lego" (quick start): the first block starts the mock DNS and
``devid serve`` (a long-running terminal), the second runs lego and ``openssl verify``.
"Enrol the device (ACME device-attest-01)" (after the attestation walkthrough): the
walkthrough's steps are replayed first (as tests/hosts/test_attestation_walkthrough.py
does), then the block runs. "Enrol a device with SCEP": the block adds the provisioner
to a served data directory, reloads it, makes a one-time challenge and enrols with
Debian's ``scepclient`` against that ``devid serve``.

The blocks take their ports from environment variables with the documented ports as
defaults (``${DEVID_PORT:-8443}``...), so the README stays copy-pasteable and the test
uses free ports. Each block runs in ``bash -e -o pipefail`` from a directory laid out
like the repository (``.venv``, ``data``, ``root.crt``...).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.enroll import device_identifier
from agent.swtpm import free_port_pair
from hosts.testing.processes import ManagedProcess
from hosts.testing.servers import devid_serve, run_devid, wait_for_health
from tests.conftest import REPO_ROOT

from .scep_client import SCEPClient
from .support import (
    client_env,
    dns_names,
    free_ports,
    load_certificate,
    need,
    quick_start_repository,
    repository_like,
    run_block,
    shown,
)

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.swtpm import SwtpmCLI

pytest_plugins = ["tests.swtpm"]

README = REPO_ROOT / "README.md"
LEGO_SECTION = "Get a certificate with lego"
ENROL_SECTION = "Enrol the device (ACME device-attest-01)"
SCEP_SECTION = "Enrol a device with SCEP"


def section(title: str) -> str:
    """The README text under the heading *title*, up to the next heading."""
    text = README.read_text(encoding="utf-8")
    # Headings are ## to ######: a line starting "# " is a shell comment in a block.
    match = re.search(rf"^#{{2,6}} {re.escape(title)}\n(.*?)(?=^#{{2,6}} |\Z)", text, re.M | re.S)
    assert match, f"README.md has no section {title!r}"
    return match.group(1)


def sh_blocks(title: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", section(title), flags=re.M | re.S)


def test_readme_has_the_blocks() -> None:
    server, client = sh_blocks(LEGO_SECTION)
    assert "devid serve" in server and "--acme-http01-port" in server
    assert "lego" in client and "openssl verify" in client
    (enrol,) = sh_blocks(ENROL_SECTION)
    assert "devid agent enroll --acme" in enrol
    (scep,) = sh_blocks(SCEP_SECTION)
    assert "devid scep challenge mdm" in scep and "scepclient -server-url" in scep


@need("lego", "openssl", "pebble-challtestsrv")
def test_get_a_certificate_with_lego(tmp_path: Path) -> None:
    server_block, client_block = sh_blocks(LEGO_SECTION)
    repo = quick_start_repository(tmp_path / "repo")

    # The mock DNS listens on UDP too: every port is free for both, so all four differ.
    port, http01, dns, dns_admin = free_ports(4, udp=True)
    url = f"https://127.0.0.1:{port}"
    ports = {
        "DEVID_PORT": str(port),
        "HTTP01_PORT": str(http01),
        "DNS_PORT": str(dns),
        "DNS_ADMIN_PORT": str(dns_admin),
    }
    env = client_env(**ports)
    log = tmp_path / "first-terminal.log"
    # The first terminal runs until stopped; stopping it stops the mock DNS and the
    # server too (every process below it), and a failed start quotes its output.
    first_terminal = ManagedProcess(
        ["bash", "-c", server_block], stdout=log, env=env, cwd=repo, name="the first terminal"
    )
    with first_terminal:
        wait_for_health(url, repo / "root.crt", first_terminal)
        # The second terminal, after the quick start's exports.
        path = f"{repo / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"
        second = client_env(**ports, PATH=path, DEVID_CA_URL=url, DEVID_ROOT="root.crt")
        result = run_block(client_block, repo, second)

    certificate = repo / "lego" / "certificates" / "demo.devid.test.crt"
    assert f"{certificate.relative_to(repo)}: OK" in result.stdout, shown(result)
    assert dns_names(load_certificate(certificate)) == ["demo.devid.test"]
    text = log.read_text()
    assert "certificate issued" in text, text
    assert "Traceback" not in text, text


@need("openssl")
def test_enrol_the_device(swtpm_cli: SwtpmCLI, tmp_path: Path) -> None:
    (block,) = sh_blocks(ENROL_SECTION)
    devid = swtpm_cli.devid
    repo = repository_like(tmp_path / "repo")
    data, tpm, state, root = repo / "data", repo / "tpm", repo / "agent-state", repo / "root.crt"

    # The walkthrough, as the README runs it: a CA, a swtpm device whose EK CA the CA
    # trusts, the device registered, attested (AK certificate), then disabled and stopped.
    fingerprint = re.search(r"root fingerprint:\s+(\S+)", devid("init", "--data", data).stdout)
    assert fingerprint
    swtpm_port = free_port_pair()
    started = swtpm_cli.start(tpm, swtpm_port).stdout
    tcti = re.search(r"TCTI:\s+(\S+)", started)
    bundle = re.search(r"EK CA bundle:\s+(\S+)", started)
    assert tcti and bundle, started
    (data / "ek-roots").mkdir(exist_ok=True)
    shutil.copy(bundle.group(1), data / "ek-roots" / "swtpm.pem")

    with devid_serve(data, tmp_path / "serve.log") as server:
        url = server.url
        devid("ca", "root", root, "--fingerprint", fingerprint.group(1), "--ca-url", url)
        ek = json.loads(devid("agent", "info", "--tcti", tcti.group(1), "--json").stdout)["ek"]
        devid("device", "add", "--data", data, "--ek", ek, "--name", "demo-laptop")
        attest = ("agent", "attest", "--ca", url, "--root", root, "--tcti", tcti.group(1))
        devid(*attest, "--state", state)
        devid("device", "disable", "--data", data, ek)
        swtpm_cli.stop(tpm)

        # The block, in the walkthrough's shell (PATH, DEVID_CA_URL, DEVID_TCTI, EK set).
        path = f"{repo / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"
        env = dict(swtpm_cli.env)
        env.update(
            PATH=path,
            DEVID_CA_URL=url,
            DEVID_ROOT="root.crt",
            DEVID_TCTI=tcti.group(1),
            EK=ek,
            SWTPM_PORT=str(swtpm_port),
        )
        result = run_block(block, repo, env)
        swtpm_cli.reap()

    out = result.stdout
    assert "Device certificate (held in memory only; nothing was written to disk):" in out, out
    # The identifier ordered is the one the AK certificate binds.
    identifier = device_identifier(load_certificate(state / "ak.crt"))
    assert f"PermanentIdentifier:{identifier}" in out, out
    assert re.search(r"Issuer:\s+.*devid Agent CA", out), out
    assert "created in and never leaving the TPM" in out, out
    assert swtpm_cli.status(tpm).returncode == 3  # the block stopped its swtpm


@need("openssl", "scepclient", "curl")
def test_enrol_a_device_with_scep(tmp_path: Path) -> None:
    (block,) = sh_blocks(SCEP_SECTION)
    repo = quick_start_repository(tmp_path / "repo")
    data, root = repo / "data", repo / "root.crt"
    log = tmp_path / "serve.log"

    with devid_serve(data, log) as server:
        # The second terminal, after the quick start's exports.
        path = f"{repo / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"
        env = client_env(PATH=path, DEVID_DATA=str(data), DEVID_CA_URL=server.url)
        result = run_block(block, repo, env)
        assert "reloaded" in log.read_text(), log.read_text()
        ra = SCEPClient(server.url, "mdm", root).ra().public_bytes(Encoding.DER)
        fingerprint = run_devid("scep", "ra", "mdm", "--fingerprint", "--data", data).stdout
        assert fingerprint.strip() == hashlib.sha256(ra).hexdigest()

    # scepclient enrolled, and openssl showed what it got.
    out = result.stdout
    assert "POSTPKIOperation" in out and "AES" in out, shown(result)
    assert re.search(r"^subject=CN\s*=\s*printer-7$", out, re.M), shown(result)
    assert "TLS Web Client Authentication" in out, shown(result)
    certificate = load_certificate(repo / "printer-7" / "cert.pem")
    assert certificate.subject.rfc4514_string() == "CN=printer-7"
    tls_ca = x509.load_pem_x509_certificate((data / "certs" / "tls_ca.crt").read_bytes())
    assert certificate.issuer == tls_ca.subject
    issued = json.loads(run_devid("scep", "requests", "--data", data, "--json").stdout)
    # (scepclient's CSR adds OU, O and C; the provisioner certifies the CN alone.)
    assert [(t["subject"].split(",")[0], t["status"], t["challenge"]) for t in issued] == [
        ("CN=printer-7", "issued", "one-time")
    ], issued
