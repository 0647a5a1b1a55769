"""Debian's pebble (the ACME test CA) as the ACME section's comparison server.

:class:`PebbleProcess` runs ``pebble -config FILE -dnsserver DNS`` with the
benchmark's environment (:data:`PEBBLE_ENV`, each setting explained in
:mod:`benchmarks.sections.acme`), its ACME and management listeners on free
127.0.0.1 ports, and a TLS certificate for 127.0.0.1 from a throw-away CA made
here (:func:`make_tls_material`). It is a
:class:`hosts.testing.processes.ManagedProcess`, measured like a devid server
(CPU and memory from /proc).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx

from hosts.testing.ports import LOOPBACK, free_ports
from hosts.testing.processes import ManagedProcess, ProcessError

from .common import BenchmarkError
from .procs import TreeMemory, tree_cpu_seconds, tree_memory

#: pebble's directory.
PEBBLE_DIRECTORY_PATH = "/dir"
#: pebble's environment for the benchmark (each explained in benchmarks.sections.acme).
PEBBLE_ENV = {
    "PEBBLE_VA_NOSLEEP": "1",
    "PEBBLE_VA_ALWAYS_VALID": "0",
    "PEBBLE_WFE_NONCEREJECT": "0",
    "PEBBLE_AUTHZREUSE": "0",
}


def pebble_missing() -> str | None:
    missing = [tool for tool in ("pebble", "pebble-challtestsrv") if shutil.which(tool) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not installed: scripts/install-system-deps installs them"
            " (Debian package pebble)"
        )
    return None


def pebble_version() -> str | None:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "pebble"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def make_tls_material(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 (pebble's ACME listener):
    (CA certificate, server certificate, server key), PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devid benchmark pebble TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(paths[2], 0o600)
    return paths


class PebbleProcess:
    """``pebble -config FILE -dnsserver DNS`` with the benchmark's environment."""

    def __init__(
        self, work_dir: Path, http01_port: int, dns_port: int, cpus: tuple[int, ...] | None
    ) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        self.root, cert, key = make_tls_material(work_dir / "tls")
        self.port, management_port, tls_port = free_ports(3)
        self.config = {
            "pebble": {
                "listenAddress": f"{LOOPBACK}:{self.port}",
                "managementListenAddress": f"{LOOPBACK}:{management_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": http01_port,
                # tls-alpn-01 is offered by pebble but never answered here; a free port.
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        config_path = work_dir / "pebble-config.json"
        config_path.write_text(json.dumps(self.config, indent=2) + "\n")
        self.env = dict(PEBBLE_ENV)
        command = [
            str(shutil.which("pebble")),
            "-config",
            str(config_path),
            "-dnsserver",
            f"{LOOPBACK}:{dns_port}",
        ]
        self.managed = ManagedProcess(
            command, stdout=work_dir / "pebble.log", env={**os.environ, **self.env}, cpus=cpus
        )

    @property
    def pid(self) -> int:
        return self.managed.pid

    @property
    def command(self) -> list[str]:
        return self.managed.command

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def check_alive(self) -> None:
        try:
            self.managed.check_alive()
        except ProcessError as exc:
            raise BenchmarkError(str(exc)) from None

    def wait_ready(self, timeout: float) -> str:
        """The directory URL, once it answers 200."""
        directory = f"{self.url}{PEBBLE_DIRECTORY_PATH}"
        context = ssl.create_default_context(cafile=str(self.root))

        def answers() -> bool:
            try:
                return client.get(directory).status_code == 200
            except httpx.HTTPError:
                return False

        with httpx.Client(verify=context, timeout=2.0, trust_env=False) as client:
            try:
                self.managed.wait_until(answers, timeout=timeout, what=f"answer {directory}")
            except ProcessError as exc:
                raise BenchmarkError(str(exc)) from None
        return directory

    def cpu_snapshot(self) -> dict[int, float]:
        return tree_cpu_seconds([self.pid])

    def memory(self) -> TreeMemory:
        return tree_memory(self.pid)

    def stop(self) -> int | None:
        return self.managed.stop(timeout=10.0)
