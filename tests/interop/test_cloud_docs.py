"""docs/cloud.md's walk-throughs, one per cloud, run exactly as written against a served
CA.

Each block starts the loopback metadata server (``python -m hosts.testing.metadata
--cloud ...``), adds the cloud's provisioner to the served data directory, reloads it,
gets a certificate for the "instance", is refused a second one (trust on first use) and
renews the first; GCP's also lets the operator forget the instance and gets one more.
The metadata server's port comes from ``METADATA_PORT``, so the test uses a free one.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from hosts.testing.servers import devid_serve
from tests.conftest import REPO_ROOT

from .support import (
    client_env,
    free_ports,
    load_certificate,
    need,
    quick_start_repository,
    run_block,
    shown,
)

DOC = REPO_ROOT / "docs" / "cloud.md"


def sh_block(cloud: str) -> str:
    section = f"Try {cloud} with the loopback metadata server"
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^### {re.escape(section)}\n(.*?)(?=^#{{2,3}} |\Z)", text, re.M | re.S)
    assert match, f"docs/cloud.md has no section {section!r}"
    (block,) = re.findall(r"^```sh\n(.*?)^```", match.group(1), flags=re.M | re.S)
    return block


def run_walkthrough(cloud: str, tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The repository-like directory (its CA served while the block runs) and what the
    block printed."""
    block = sh_block(cloud)
    repo = quick_start_repository(tmp_path / "repo")
    data = repo / "data"
    (port,) = free_ports(1)
    with devid_serve(data, tmp_path / "serve.log") as server:
        path = f"{repo / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"
        env = client_env(
            PATH=path,
            DEVID_DATA=str(data),
            DEVID_CA_URL=server.url,
            DEVID_ROOT="root.crt",
            METADATA_PORT=str(port),
        )
        result = run_block(block, repo, env)
    return repo, result


def issued_by_tls_ca(repo: Path, *names: str) -> None:
    tls_ca = load_certificate(repo / "data" / "certs" / "tls_ca.crt")
    for name in names:
        assert load_certificate(repo / name).issuer == tls_ca.subject, name


@need("curl", "openssl")
def test_the_gcp_walkthrough_enrols_an_instance_once(tmp_path: Path) -> None:
    repo, result = run_walkthrough("GCP", tmp_path)
    out = result.stdout
    assert re.search(r"^subject=CN\s*=\s*web-1$", out, re.M), shown(result)
    assert "DNS:web-1.c.my-project.internal" in out, shown(result)
    assert "refused: this instance already has its certificate" in out, shown(result)
    assert "already been used" in result.stderr, shown(result)
    issued_by_tls_ca(repo, "web-1.crt", "again.crt")


@need("curl", "openssl")
def test_the_aws_walkthrough_enrols_an_instance_once(tmp_path: Path) -> None:
    repo, result = run_walkthrough("AWS", tmp_path)
    out = result.stdout
    assert re.search(r"^subject=CN\s*=\s*i-0a1b2c3d4e5f67890$", out, re.M), shown(result)
    assert "DNS:ip-172-31-16-5.ec2.internal" in out, shown(result)
    assert "IP Address:172.31.16.5" in out, shown(result)
    assert "URI:aws://123456789012/us-east-1/i-0a1b2c3d4e5f67890" in out, shown(result)
    assert "refused: this instance already has its certificate" in out, shown(result)
    assert "already been used" in result.stderr, shown(result)
    assert "renewed" in out, shown(result)
    issued_by_tls_ca(repo, "ec2.crt")


@need("curl", "openssl")
def test_the_azure_walkthrough_enrols_a_vm_once(tmp_path: Path) -> None:
    repo, result = run_walkthrough("Azure", tmp_path)
    out = result.stdout
    assert re.search(r"^subject=CN\s*=\s*web-1$", out, re.M), shown(result)
    assert "URI:azure://5f2d8c71-3a94-4e6b-8d0f-1c7b9e2a4d63/my-group/web-1" in out, shown(result)
    assert "URI:urn:uuid:02aab8a4-74ef-476e-8182-f6d2ba4166a6" in out, shown(result)
    assert "refused: this VM already has its certificate" in out, shown(result)
    assert "already been used" in result.stderr, shown(result)
    assert re.search(r"^02aab8a4-74ef-476e-8182-f6d2ba4166a6$", out, re.M), shown(result)
    assert "renewed" in out, shown(result)
    issued_by_tls_ca(repo, "vm.crt")
