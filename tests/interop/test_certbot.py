"""certbot (PyPI, the command) against ``devid serve``: http-01 with its standalone
server, dns-01 through manual hooks (a wildcard and its base name), and revocation.

certbot trusts the server through ``REQUESTS_CA_BUNDLE`` and keeps its configuration,
work and log directories under the test's temporary directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .support import (
    Server,
    client_env,
    dns_names,
    load_certificate,
    need,
    openssl_verify,
    run,
    shown,
)

CERTBOT = Path(sys.executable).parent / "certbot"

pytestmark = need(str(CERTBOT), "openssl", "pebble-challtestsrv")


class Certbot:
    def __init__(self, server: Server, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir
        self.config = workdir / "config"
        self.env = client_env(REQUESTS_CA_BUNDLE=str(server.root))

    def __call__(self, command: str, *args: str) -> str:
        argv = [str(CERTBOT), command, "--server", self.server.directory(), "--non-interactive"]
        argv += ["--config-dir", str(self.config), "--work-dir", str(self.workdir / "work")]
        argv += ["--logs-dir", str(self.workdir / "logs"), *args]
        result = run(argv, self.env, self.workdir, timeout=90)
        assert result.returncode == 0, shown(result)
        return result.stdout + result.stderr

    def certonly(self, *args: str) -> str:
        return self("certonly", "--agree-tos", "-m", "ops@example.com", *args)

    def verify(self, lineage: str) -> int:
        live = self.config / "live" / lineage
        openssl_verify(self.server.root, live / "chain.pem", live / "cert.pem")
        return load_certificate(live / "cert.pem").serial_number

    def names(self, lineage: str) -> list[str]:
        return dns_names(load_certificate(self.config / "live" / lineage / "cert.pem"))


def test_standalone_http01_then_revoke(server: Server, tmp_path: Path) -> None:
    certbot = Certbot(server, tmp_path)
    name = "certbot.devid.test"
    port = str(server.http01_port)

    output = certbot.certonly(
        "--standalone", "--http-01-port", port, "--http-01-address", "127.0.0.1", "-d", name
    )

    assert "Successfully received certificate." in output, output
    serial = certbot.verify(name)
    assert certbot.names(name) == [name]

    output = certbot("revoke", "--cert-name", name, "--reason", "keycompromise")
    assert "successfully revoked" in output, output
    assert serial in server.crl_serials()
    server.assert_clean_log()


def test_manual_dns01_with_hooks_for_a_wildcard(server: Server, tmp_path: Path) -> None:
    certbot = Certbot(server, tmp_path)
    hook = server.dns.write_dns_hook(tmp_path / "dns-hook")
    names = ["*.certbot-dns.devid.test", "certbot-dns.devid.test"]

    output = certbot.certonly(
        "--manual",
        "--preferred-challenges",
        "dns",
        "--manual-auth-hook",
        f"{hook} present",
        "--manual-cleanup-hook",
        f"{hook} cleanup",
        "-d",
        names[0],
        "-d",
        names[1],
    )

    assert "Successfully received certificate." in output, output
    (lineage,) = [p.name for p in (certbot.config / "live").iterdir() if p.is_dir()]
    certbot.verify(lineage)
    assert certbot.names(lineage) == sorted(names)
    server.assert_clean_log()
