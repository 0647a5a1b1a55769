"""A real OpenID provider for the tests: oauth2-mock-server from npm, run by ``provider.mjs``.

``make test`` installs the npm packages (``npm ci`` from the repository's
package-lock.json) into ``node_modules``; :func:`start_provider` runs
``node tests/oidc/provider.mjs`` on 127.0.0.1 and a free port and returns an
:class:`OIDCProvider` to drive it. The provider signs ID tokens with RS256 and ES256
keys by default; the control endpoints (``/_test/…``, see provider.mjs) let a test
have a token signed with any claims, set the claims of the tokens a login gets,
rotate the keys and count requests.

Use the fixtures with ``pytest_plugins = ["tests.oidc.provider"]``: ``oidc_provider``
is one provider per test module, reset (claims, JWKS headers) after each test.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from hosts.testing.processes import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("provider.mjs")
PACKAGE = REPO_ROOT / "node_modules" / "oauth2-mock-server"
START_TIMEOUT = 20.0


def provider_available() -> str | None:
    """None if the provider can run here, else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not PACKAGE.is_dir():
        return "oauth2-mock-server is not installed (run `npm ci` in the repository)"
    return None


class OIDCProvider:
    """A running provider: its issuer URL and the test controls."""

    def __init__(self, process: ManagedProcess, issuer: str) -> None:
        self.process = process
        self.issuer = issuer
        self.http = httpx.Client(base_url=issuer, timeout=10.0)

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=dict(body))
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def token(
        self,
        claims: Mapping[str, Any],
        *,
        header: Mapping[str, Any] | None = None,
        kid: str | None = None,
    ) -> str:
        """An ID token the provider signs: its iss/iat/nbf/exp, then *claims* (None removes one)."""
        body: dict[str, Any] = {"claims": dict(claims), "header": dict(header or {})}
        if kid is not None:
            body["kid"] = kid
        return str(self._post("/_test/token", body)["id_token"])

    def set_profile(self, claims: Mapping[str, Any]) -> None:
        """Claims merged into every ID token ``/token`` issues (the person who signs in)."""
        self._post("/_test/profile", {"claims": dict(claims)})

    def rotate(self, algs: Sequence[str] = ("RS256", "ES256")) -> list[dict[str, str]]:
        """Replace every signing key with new ones; returns the new keys (kid, alg)."""
        keys: list[dict[str, str]] = self._post("/_test/rotate", {"algs": list(algs)})["keys"]
        return keys

    def keys(self) -> list[dict[str, str]]:
        response = self.http.get("/_test/keys")
        response.raise_for_status()
        keys: list[dict[str, str]] = response.json()["keys"]
        return keys

    def set_jwks_headers(self, headers: Mapping[str, str]) -> None:
        self._post("/_test/jwks-headers", {"headers": dict(headers)})

    def requests(self, path: str) -> int:
        """How many requests reached *path* so far."""
        response = self.http.get("/_test/stats")
        response.raise_for_status()
        return int(response.json().get(path, 0))

    def reset(self) -> None:
        self.set_profile({})
        self.set_jwks_headers({})

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


def start_provider(workdir: Path, *, algs: Sequence[str] = ("RS256", "ES256")) -> OIDCProvider:
    """Run the provider on 127.0.0.1 and a free port; its output goes to *workdir*."""
    missing = provider_available()
    if missing is not None:
        raise RuntimeError(missing)
    out = workdir / "oidc-provider.log"
    process = ManagedProcess(
        ["node", SCRIPT, "--port", "0", "--algs", ",".join(algs)],
        stdout=out,
        stderr=workdir / "oidc-provider.err",
        cwd=REPO_ROOT,
        name="oauth2-mock-server",
    )

    def started() -> dict[str, Any] | None:
        text = out.read_text() if out.exists() else ""
        if "\n" not in text:
            return None
        value: dict[str, Any] = json.loads(text.split("\n", 1)[0])
        return value

    try:
        info = process.wait_for(started, timeout=START_TIMEOUT, what="print its issuer URL")
    except BaseException:
        process.stop()
        raise
    provider = OIDCProvider(process, str(info["issuer"]))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:  # bounded: the discovery document answers at once
        try:
            if provider.http.get("/.well-known/openid-configuration").status_code == 200:
                return provider
        except httpx.HTTPError:
            time.sleep(0.05)
    provider.stop()
    raise RuntimeError("the OpenID provider did not serve its discovery document")


@pytest.fixture(scope="module")
def oidc_provider_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCProvider]:
    missing = provider_available()
    if missing is not None:
        pytest.fail(f"the OpenID provider cannot run: {missing}")
    provider = start_provider(tmp_path_factory.mktemp("oidc-provider"))
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def oidc_provider(oidc_provider_module: OIDCProvider) -> Iterator[OIDCProvider]:
    """The module's provider; the claims and JWKS headers a test set are reset after it."""
    yield oidc_provider_module
    oidc_provider_module.reset()
