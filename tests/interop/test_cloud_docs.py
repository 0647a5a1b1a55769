"""docs/cloud.md's GCP walk-through, run exactly as written against a served CA.

The block starts the loopback metadata server (``python -m hosts.testing.metadata``),
adds a GCP provisioner to the served data directory, reloads it, gets a certificate for
the "instance", is refused a second one (trust on first use), lets the operator forget
the instance, gets one more and renews the first. The metadata server's port comes from
``METADATA_PORT`` (default 8089), so the test uses a free one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography import x509

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
SECTION = "Try it with the loopback metadata server"


def sh_block() -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^### {re.escape(SECTION)}\n(.*?)(?=^#{{2,3}} |\Z)", text, re.M | re.S)
    assert match, f"docs/cloud.md has no section {SECTION!r}"
    (block,) = re.findall(r"^```sh\n(.*?)^```", match.group(1), flags=re.M | re.S)
    return block


@need("curl", "openssl")
def test_the_gcp_walkthrough_enrols_an_instance_once(tmp_path: Path) -> None:
    block = sh_block()
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
    out = result.stdout
    assert re.search(r"^subject=CN\s*=\s*web-1$", out, re.M), shown(result)
    assert "DNS:web-1.c.my-project.internal" in out, shown(result)
    assert "refused: this instance already has its certificate" in out, shown(result)
    assert "already been used" in result.stderr, shown(result)
    tls_ca = x509.load_pem_x509_certificate((data / "certs" / "tls_ca.crt").read_bytes())
    for name in ("web-1.crt", "again.crt"):
        assert load_certificate(repo / name).issuer == tls_ca.subject
