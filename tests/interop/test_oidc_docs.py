"""docs/oidc.md's walk-through, run exactly as written against oauth2-mock-server.

The first block starts the provider (``npx oauth2-mock-server``, a long-running
terminal); the second, in the quick start's second terminal, adds the provisioner to a
served data directory, reloads it, signs in with ``devid login`` (curl playing the
browser) and shows the certificate. The blocks take the provider's port from
``OIDC_PORT`` (default 8080), so the test uses a free one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
from cryptography import x509

from hosts.testing.processes import ManagedProcess
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

DOC = REPO_ROOT / "docs" / "oidc.md"
SECTION = "Try it with oauth2-mock-server"


def sh_blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(SECTION)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/oidc.md has no section {SECTION!r}"
    return re.findall(r"^```sh\n(.*?)^```", match.group(1), flags=re.M | re.S)


def test_the_walkthrough_has_its_blocks() -> None:
    provider, client = sh_blocks()
    assert "npx oauth2-mock-server" in provider
    assert 'type = "OIDC"' in client and "devid login --provisioner sso" in client


@need("node", "npx", "curl", "openssl")
def test_the_walkthrough_signs_in_and_gets_a_certificate(tmp_path: Path) -> None:
    provider_block, client_block = sh_blocks()
    # Laid out like the repository, with the npm packages make test installed.
    repo = quick_start_repository(tmp_path / "repo", npm=True)
    data = repo / "data"
    (port,) = free_ports(1)
    issuer = f"http://localhost:{port}"

    provider = ManagedProcess(
        ["bash", "-c", provider_block],
        stdout=tmp_path / "provider.log",
        env=client_env(OIDC_PORT=str(port)),
        cwd=repo,
        name="the provider's terminal",
    )
    with provider:
        provider.wait_until(
            lambda: _answers(f"http://127.0.0.1:{port}/.well-known/openid-configuration"),
            timeout=60,
            what="serve its discovery document",
        )
        with devid_serve(data, tmp_path / "serve.log") as server:
            path = f"{repo / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"
            env = client_env(
                PATH=path,
                DEVID_DATA=str(data),
                DEVID_CA_URL=server.url,
                DEVID_ROOT="root.crt",
                OIDC_PORT=str(port),
            )
            result = run_block(client_block, repo, env)
    out = result.stdout
    assert "Open this URL to sign in:" in out, shown(result)
    assert re.search(r"^subject=CN\s*=\s*johndoe$", out, re.M), shown(result)
    assert f"URI:{issuer}#johndoe" in out, shown(result)
    certificate = load_certificate(repo / "login" / "sso.crt")
    tls_ca = x509.load_pem_x509_certificate((data / "certs" / "tls_ca.crt").read_bytes())
    assert certificate.issuer == tls_ca.subject


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False
