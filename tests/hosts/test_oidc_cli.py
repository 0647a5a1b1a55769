"""``devid login`` and ``devid ca certificate --provisioner`` end to end, as a person runs
them (subprocesses), against ``devid serve`` on both hosts with an OIDC provisioner whose
provider is a real one (oauth2-mock-server, tests/oidc/provider.py).

The test plays the person's browser: it reads the URL the command prints and follows
its redirects, which end at the command's loopback callback."""

from __future__ import annotations

import queue
import shutil
import stat
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import attrs
import httpx
import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from hosts.testing.servers import HOSTS, DevidServer, clean_env, devid_command, devid_serve
from hosts.testing.servers import run_devid as run_devid
from tests.conftest import CA

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.oidc.provider import OIDCProvider

pytest_plugins = ["tests.oidc.provider"]

PROVISIONER = "corp"
CLIENT_ID = "devid-cli"
ALICE = {
    "sub": "alice-1",
    "email": "alice@example.com",
    "email_verified": True,
    "groups": ["engineering"],
}
#: The bound on one command, in seconds.
COMMAND_TIMEOUT = 90.0


def add_oidc_provisioner(data_dir: Path, provider: str) -> None:
    config_path = data_dir / "devid.toml"
    config = tomllib.loads(config_path.read_text())
    config.setdefault("provisioners", []).append(
        {
            "type": "OIDC",
            "name": PROVISIONER,
            "issuer": "tls",
            "provider": provider,
            "client_id": CLIENT_ID,
            "domains": ["example.com"],
            "key_refresh_interval": "1s",
        }
    )
    config_path.write_text(tomli_w.dumps(config))


@attrs.frozen
class Served:
    server: DevidServer
    root: Path

    def ca_options(self) -> tuple[str, ...]:
        return ("--ca-url", self.server.url, "--root", str(self.root))


@pytest.fixture(scope="module", params=HOSTS)
def served(
    request: pytest.FixtureRequest,
    _ca_template: CA,
    oidc_provider_module: OIDCProvider,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """A CA with the OIDC provisioner ``corp``, served by ``devid serve`` on one host."""
    host = str(request.param)
    work = tmp_path_factory.mktemp(f"oidc-{host}")
    data = work / "ca"
    shutil.copytree(_ca_template.data_dir, data)
    add_oidc_provisioner(data, oidc_provider_module.issuer)
    root = data / _ca_template.root_path.relative_to(_ca_template.data_dir)
    env = clean_env(DEVID_PASSWORD=_ca_template.password.decode())
    with devid_serve(data, work / "serve.log", host=host, root=root, env=env) as server:
        yield Served(server, root)


def read_lines(stream: IO[str]) -> queue.Queue[str | None]:
    """The lines of *stream* as a reader thread gets them (None at the end)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    return lines


def sign_in_as_the_browser(*args: str | Path, device: bool = False) -> tuple[str, str]:
    """Run ``devid ARGS`` (a command that signs in), open the URL it prints as the
    person would, and return its stdout and stderr once it exits 0.

    The browser flow prints "Open this URL to sign in:" and the URL on the next line;
    the device flow (*device*) prints "(or open URL)" with the code in the URL."""
    process = subprocess.Popen(
        [*devid_command(), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        lines = read_lines(process.stdout)
        printed: list[str] = []
        url = ""
        while not url:
            line = lines.get(timeout=COMMAND_TIMEOUT)
            assert line is not None, "".join(printed) + process.stderr.read()
            if device and line.startswith("(or open "):
                url = line.strip().removeprefix("(or open ").removesuffix(")")
            elif not device and printed and printed[-1] == "Open this URL to sign in:\n":
                assert line.startswith("  http://127.0.0.1:"), line
                url = line.strip()
            printed.append(line)
        with httpx.Client(timeout=30.0, follow_redirects=True) as browser:
            page = browser.get(url)
        assert page.status_code == 200, page.text
        if not device:
            assert page.text == "Signed in to devid; you can close this tab.\n", page.text
        code = process.wait(timeout=COMMAND_TIMEOUT)
        while (line := lines.get(timeout=COMMAND_TIMEOUT)) is not None:
            printed.append(line)
        stderr = process.stderr.read()
        stdout = "".join(printed)
        assert code == 0, stdout + stderr
        return stdout, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def names_of(crt: Path) -> tuple[x509.Certificate, list[str], list[str]]:
    """The leaf of the chain in *crt*, its email SANs and its URI SANs."""
    chain = x509.load_pem_x509_certificates(crt.read_bytes())
    sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        chain[0],
        sans.get_values_for_type(x509.RFC822Name),
        sans.get_values_for_type(x509.UniformResourceIdentifier),
    )


def test_devid_login_signs_in_through_the_browser(
    served: Served, oidc_provider: OIDCProvider, tmp_path: Path
) -> None:
    oidc_provider.set_profile(ALICE)
    out = tmp_path / "login"
    stdout, _ = sign_in_as_the_browser(
        "login", "--provisioner", PROVISIONER, "--no-browser", *served.ca_options(), "--out", out
    )
    crt, key = out / f"{PROVISIONER}.crt", out / f"{PROVISIONER}.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    leaf, emails, uris = names_of(crt)
    assert emails == ["alice@example.com"]
    assert any(uri.startswith(oidc_provider.issuer) for uri in uris), uris
    assert f"Your certificate has been saved in {crt}." in stdout
    assert "email:alice@example.com" in stdout
    assert leaf.not_valid_after_utc.isoformat() in stdout
    assert load_pem_private_key(key.read_bytes(), None).public_key() == leaf.public_key()


def test_devid_login_signs_in_with_the_device_flow(
    served: Served, oidc_provider: OIDCProvider, tmp_path: Path
) -> None:
    oidc_provider.set_profile(ALICE)
    out = tmp_path / "login"
    stdout, _ = sign_in_as_the_browser(
        "login", "--provisioner", PROVISIONER, "--device", *served.ca_options(), "--out", out,
        device=True,
    )  # fmt: skip
    assert f"To sign in, open {oidc_provider.issuer}/device and enter the code " in stdout
    _, emails, uris = names_of(out / f"{PROVISIONER}.crt")
    assert emails == ["alice@example.com"]
    assert any(uri.startswith(oidc_provider.issuer) for uri in uris), uris


def test_devid_ca_certificate_signs_in_with_a_provisioner(
    served: Served, oidc_provider: OIDCProvider, tmp_path: Path
) -> None:
    oidc_provider.set_profile(ALICE)
    crt, key = tmp_path / "alice.crt", tmp_path / "alice.key"
    stdout, _ = sign_in_as_the_browser(
        "ca", "certificate", "alice@example.com", crt, key,
        "--provisioner", PROVISIONER, "--no-browser", "--timeout", "60",
        *served.ca_options(),
    )  # fmt: skip
    _, emails, uris = names_of(crt)
    assert emails == ["alice@example.com"]
    assert any(uri.startswith(oidc_provider.issuer) for uri in uris), uris
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert f"Your certificate has been saved in {crt}." in stdout


def test_devid_login_takes_a_token_obtained_elsewhere(
    served: Served, oidc_provider: OIDCProvider, tmp_path: Path
) -> None:
    token = oidc_provider.token(
        {"aud": CLIENT_ID, "sub": "bob-2", "email": "bob@example.com", "email_verified": True}
    )
    out = tmp_path / "login"
    result = run_devid(
        "login", "--provisioner", PROVISIONER, "--token", token, *served.ca_options(),
        "--out", out, timeout=COMMAND_TIMEOUT,
    )  # fmt: skip
    assert "Open this URL" not in result.stdout
    _, emails, uris = names_of(out / f"{PROVISIONER}.crt")
    assert emails == ["bob@example.com"]
    assert any(uri.startswith(oidc_provider.issuer) for uri in uris), uris


def test_errors_are_clear(served: Served, tmp_path: Path) -> None:
    unknown = run_devid(
        "login", "--provisioner", "nobody", *served.ca_options(), "--out", tmp_path, check=False
    )
    assert unknown.returncode == 1, unknown.stderr
    assert "the CA has no provisioner named 'nobody' (its OIDC provisioners: corp)" in (
        unknown.stderr
    )
    assert "Traceback" not in unknown.stderr
    not_oidc = run_devid(
        "login", "--provisioner", "admin", *served.ca_options(), "--out", tmp_path, check=False
    )
    assert not_oidc.returncode == 1, not_oidc.stderr
    assert "provisioner 'admin' is of type 'JWK', not OIDC" in not_oidc.stderr
    without = run_devid("ca", "certificate", "x", tmp_path / "c", tmp_path / "k", check=False)
    assert without.returncode == 2
    assert "the following arguments are required: --token" in without.stderr
