"""Shared pieces: progress lines, statistics, machine facts, CAs and pre-built requests."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import cryptography
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from agent.caclient import make_csr
from engine.jose import PrivateKey
from engine.keys import KeyType
from hosts.core.init import DEFAULT_PROVISIONER, InitResult, init_data_dir
from hosts.core.secrets import Password
from plugins.jwk import mint_token
from plugins.keygen import generate_key

#: The passphrase of every benchmark CA (they live in a temporary directory).
PASSWORD = b"devid benchmark passphrase"
SIGN_PATH = "/1.0/sign"
#: RSA client keys are slow to generate, so requests share a small pool of them.
RSA_CLIENT_KEY_POOL = 8


class BenchmarkError(Exception):
    """A benchmark could not run (server did not start, requests failed, ...)."""


class SectionSkipped(Exception):
    """A section cannot run here (a tool or a part of devid is missing): the reason is
    recorded under ``skipped`` in the JSON and printed, and the exit status stays 0."""


class Progress:
    """Progress on stderr: one line per step, prefixed with the seconds since the run began.

    :meth:`__call__` prints a step (always a line of its own, so a log or a CI
    transcript keeps every step). :meth:`status` shows what is going on inside a
    long step (requests done, current rate, RSS) on one live line that is
    rewritten in place, only when the stream is a terminal, at most
    ``LIVE_INTERVAL`` times a second; elsewhere it prints nothing.
    """

    LIVE_INTERVAL = 0.2

    def __init__(
        self, enabled: bool = True, stream: TextIO | None = None, live: bool | None = None
    ) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        if live is None:
            isatty = getattr(self.stream, "isatty", None)
            live = bool(isatty()) if callable(isatty) else False
        self.live = enabled and live
        self._shown = 0  # length of the live line on screen
        self._last_status = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self._shown = 0

    def __call__(self, message: str) -> None:
        if self.enabled:
            self._clear()
            print(f"[{self.elapsed():6.1f}s] {message}", file=self.stream, flush=True)

    def status(self, message: str, *, force: bool = False) -> None:
        """Rewrite the live line (terminals only; throttled unless *force*)."""
        if not self.live:
            return
        now = time.perf_counter()
        if not force and now - self._last_status < self.LIVE_INTERVAL:
            return
        self._last_status = now
        text = f"[{self.elapsed():6.1f}s] {message}"
        width = shutil.get_terminal_size((100, 20)).columns - 1
        text = text[:width]
        pad = max(0, self._shown - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._shown = len(text)

    def done(self) -> None:
        """Remove the live line (before the tables are printed)."""
        if self.live:
            self._clear()
            self.stream.flush()


# --- statistics ----------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in [0, 1]) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def rounded(value: float, digits: int = 3) -> float:
    """Round for JSON without turning small positive figures into zero."""
    if value == 0:
        return 0.0
    magnitude = abs(value)
    if magnitude >= 1:
        return round(value, digits)
    # keep `digits` significant figures below one
    shift = digits
    while magnitude * 10**shift < 10 ** (digits - 1):
        shift += 1
    return round(value, shift)


def cpu_us_per_call(operation: Callable[[Any], object], items: Sequence[Any]) -> float:
    """CPU µs per call of *operation* over *items*: this thread's CPU time, so that the
    machine's other load is left out, as it is of the CPU figures it is compared with."""
    clock = time.thread_time
    started = clock()
    for item in items:
        operation(item)
    return (clock() - started) / len(items) * 1e6


#: Repetitions whose (max - min) / median exceeds this are flagged as noisy.
NOISY_SPREAD = 0.25


def spread(rates: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of per-repetition rates (the median is the headline)."""
    mid = median(rates)
    relative = (max(rates) - min(rates)) / mid if mid else 0.0
    return {
        "median": rounded(mid, 1),
        "min": rounded(min(rates), 1),
        "max": rounded(max(rates), 1),
        "spread": rounded(relative, 3),
        "noisy": relative > NOISY_SPREAD,
    }


# --- machine ---------------------------------------------------------------------


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def filesystem_of(path: Path) -> dict[str, str] | None:
    """The mount (device, mount point, type) holding *path*, from /proc/mounts."""
    try:
        target = str(path.resolve())
        best: tuple[str, str, str] | None = None
        with open("/proc/mounts") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                device, mount, fstype = parts[0], parts[1], parts[2]
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and (best is None or len(mount) > len(best[1])):
                    best = (device, mount, fstype)
    except OSError:
        return None
    if best is None:
        return None
    return {"device": best[0], "mount": best[1], "type": best[2]}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_revision(repo: Path) -> dict[str, Any] | None:
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(status.strip())}


def machine_info(work_dir: Path) -> dict[str, Any]:
    """Facts that make two runs comparable (or explain why they are not)."""
    from cryptography.hazmat.backends.openssl.backend import backend

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    repo = Path(__file__).resolve().parents[1]
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "cpu_model": _cpu_model(),
        "load_average_at_start": load,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "cryptography": cryptography.__version__,
        "openssl": backend.openssl_version_text(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "devid": _version("devid"),
        "httpx": _version("httpx"),
        "trio": _version("trio"),
        "hypercorn": _version("hypercorn"),
        "quart": _version("quart"),
        "git": _git_revision(repo),
        "work_dir_filesystem": filesystem_of(work_dir),
    }


# --- CAs and requests ------------------------------------------------------------


def create_ca(directory: Path, key_type: KeyType) -> InitResult:
    """A fresh CA (root + four intermediates of *key_type*) with the default JWK provisioner."""
    result = init_data_dir(directory, Password(PASSWORD, "benchmark"), key_type=key_type)
    # No per-client rate limit ([server] rate_limit_per_second = 0): every request of a
    # run comes from 127.0.0.1, and its anonymous ones (/attest and /secret per AK
    # enrolment; ACME directory, new-nonce, new-account) would otherwise measure the
    # limit (20 a second after a burst of 200, docs/api.md "Limits"), not the server.
    config = directory / "devid.toml"
    text = config.read_text()
    config.write_text(text.replace("[server]\n", "[server]\nrate_limit_per_second = 0\n", 1))
    return result


def provisioner_key(data_dir: Path, name: str = DEFAULT_PROVISIONER) -> PrivateKey:
    """Decrypt the JWK provisioner's key the way ``devid token`` does."""
    from hosts.core.authority import configured_provisioners
    from hosts.core.config import load_config
    from plugins.jwk import JWKProvisioner
    from plugins.manager import PluginManager

    config = load_config(data_dir)
    provisioners = configured_provisioners(
        config, PluginManager(disabled=config.plugins_disabled), PASSWORD
    )
    provisioner = provisioners[name]
    if not isinstance(provisioner, JWKProvisioner):
        raise BenchmarkError(f"provisioner {name!r} is not a JWK provisioner")
    return provisioner.load_private_key(PASSWORD)


@dataclass(frozen=True)
class ClientRequest:
    """One device's CSR (the token is minted separately, per CA and audience)."""

    subject: str
    csr_pem: str
    csr_der: bytes


def make_client_requests(
    count: int, key_type: KeyType, *, prefix: str = "device"
) -> list[ClientRequest]:
    """*count* CSRs with distinct subjects (CN and DNS SAN ``<prefix>-<i>.bench.test``)."""
    pool: list[CertificateIssuerPrivateKeyTypes] = []
    if key_type.rsa_bits is not None:
        pool = [generate_key(key_type) for _ in range(min(count, RSA_CLIENT_KEY_POOL))]
    out: list[ClientRequest] = []
    for i in range(count):
        subject = f"{prefix}-{i:06d}.bench.test"
        key = pool[i % len(pool)] if pool else generate_key(key_type)
        csr = make_csr(key, subject, [subject])
        out.append(
            ClientRequest(
                subject=subject,
                csr_pem=csr.public_bytes(Encoding.PEM).decode(),
                csr_der=csr.public_bytes(Encoding.DER),
            )
        )
    return out


def write_password_file(path: Path) -> Path:
    """The CA passphrase in a new file of mode 0600 (for ``devid serve --password-file``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(PASSWORD + b"\n")
    return path


def mint_tokens(
    key: PrivateKey, requests: Sequence[ClientRequest], audience: str, *, provisioner: str
) -> list[str]:
    """One fresh one-time token per request (unique jti, 5 minutes, now)."""
    now = datetime.now(UTC)
    return [
        mint_token(
            key,
            provisioner=provisioner,
            subject=r.subject,
            audience=audience,
            now=now,
            jti=uuid.uuid4().hex,
        )
        for r in requests
    ]


def sign_bodies(requests: Sequence[ClientRequest], tokens: Sequence[str]) -> list[dict[str, str]]:
    """``POST /1.0/sign`` bodies: {csr, ott}."""
    if len(requests) != len(tokens):
        raise ValueError("one token per request")
    return [{"csr": r.csr_pem, "ott": t} for r, t in zip(requests, tokens, strict=True)]


def encode_bodies(requests: Sequence[ClientRequest], tokens: Sequence[str]) -> list[bytes]:
    """``POST /1.0/sign`` bodies as JSON bytes: {csr, ott}."""
    return [
        json.dumps({"csr": r.csr_pem, "ott": t}).encode()
        for r, t in zip(requests, tokens, strict=True)
    ]
