"""Helpers for the interop tests: the server under test, client environments, checks."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import pytest
from cryptography import x509

from hosts.testing.ports import free_ports as free_ports
from hosts.testing.servers import clean_env, run_devid
from tests.conftest import REPO_ROOT

if TYPE_CHECKING:
    from hosts.testing.challtestsrv import ChallTestSrv

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def need(*programs: str) -> pytest.MarkDecorator:
    missing = [p for p in programs if shutil.which(p) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


def client_env(**extra: str) -> dict[str, str]:
    """The environment for a client subprocess: no DEVID_* settings and no proxies."""
    env = {k: v for k, v in clean_env().items() if k.lower() not in PROXY_VARIABLES}
    env.update(extra)
    return env


@attrs.frozen
class Server:
    """The running ``devid serve`` and where its validators connect."""

    data_dir: Path
    url: str
    root: Path
    log: Path
    http01_port: int
    tlsalpn01_port: int
    dns: ChallTestSrv

    def directory(self, provisioner: str = "acme") -> str:
        return f"{self.url}/acme/{provisioner}/directory"

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root))

    def crl_serials(self, issuer: str = "tls") -> set[int]:  # ACME http-01 certs: TLS CA
        response = httpx.get(f"{self.url}/crl/{issuer}", verify=self.tls(), timeout=10)
        assert response.status_code == 200, response.text
        crl = x509.load_der_x509_crl(response.content)
        return {entry.serial_number for entry in crl}

    def assert_clean_log(self) -> None:
        """No request the clients made was answered 500 or hit an unhandled error."""
        bad: list[str] = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                entry: Any = json.loads(line)
            except ValueError:
                if "Traceback" in line:
                    bad.append(line)
                continue
            if not isinstance(entry, dict):
                continue
            text = json.dumps(entry).lower()
            if (
                entry.get("level") in {"error", "critical"}
                or "exception" in entry
                or entry.get("status") == 500
                or '"status": 500' in text
                or "unhandled" in text
            ):
                bad.append(line)
        assert not bad, "the server log shows errors:\n" + "\n".join(bad)


def openssl_verify(root: Path, chain: Path, leaf: Path) -> str:
    """``openssl verify -CAfile root -untrusted chain leaf``; returns its output."""
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(chain), str(leaf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result
    assert result.stdout.strip() == f"{leaf}: OK", result
    return result.stdout


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file (the leaf of a bundle)."""
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def dns_names(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


def run(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def shown(result: subprocess.CompletedProcess[str]) -> str:
    """A command's outcome for an assertion message."""
    return f"{result.args}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"


def run_block(block: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a documented shell block as written, in ``bash -e -o pipefail``; it must succeed."""
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, shown(result)
    return result


def repository_like(workdir: Path, *, npm: bool = False) -> Path:
    """*workdir* laid out like the repository where the docs run their blocks: ``.venv``
    at its root (this interpreter's venv) and, with *npm*, the npm packages ``make
    test`` installed (``node_modules``, ``package.json``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / ".venv").symlink_to(Path(sys.executable).parent.parent)
    if npm:
        for name in ("node_modules", "package.json"):
            (workdir / name).symlink_to(REPO_ROOT / name)
    return workdir


def quick_start_repository(workdir: Path, *, npm: bool = False) -> Path:
    """:func:`repository_like`, with what ``make serve`` leaves behind (``data``, an
    initialised CA) and the root the quick start fetched (``root.crt``)."""
    repo = repository_like(workdir, npm=npm)
    run_devid("init", "--data", repo / "data")
    shutil.copy(repo / "data" / "certs" / "root_ca.crt", repo / "root.crt")
    return repo
