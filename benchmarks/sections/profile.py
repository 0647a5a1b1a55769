"""cProfile of ``sign_body`` (``POST /1.0/sign`` in process; P-256 issuer, sync=full): where
the CPU goes, by function.

cProfile adds per-call overhead, so absolute numbers are inflated; read the
shares, and take the rates from the inprocess section. Writes
``OUT/profile-STAMP.pstats`` and ``.txt`` next to the results.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.keys import KeyType
from hosts.http.api import sign_body

from .. import servers
from ..common import Progress, make_client_requests, rounded
from . import RunContext
from .inprocess import BenchCA

NAME = "profile"
SIZE_OPTIONS: tuple[str, ...] = ()

SUMMARY = """\
  profile      cProfile of sign_body (P-256, sync=full); also with --profile.
               Writes OUT/profile-STAMP.pstats and .txt.
"""


# (label, file suffix, function name) for the grouped profile summary. Rust getters such as
# CSR.is_signature_valid are invisible to cProfile; their time lands in the caller.
_PROFILE_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("sign_body (total)", "hosts/http/api.py", "sign_body"),
    ("parse_csr (load + verify CSR)", "engine/csr.py", "parse_csr"),
    ("token: route_credential (types read it)", "hosts/service/signing.py", "route_credential"),
    ("token: JWKProvisioner.authorize_sign", "plugins/jwk/provisioner.py", "authorize_sign"),
    ("  jose.verify_signature", "engine/jose.py", "verify_signature"),
    ("  jose.parse_compact (parsed once)", "engine/jose.py", "parse_compact"),
    ("prepare_certificate (policy, template)", "engine/pipeline.py", "prepare_certificate"),
    ("PreparedCertificate.sign (build + sign)", "engine/pipeline.py", "sign"),
    ("  build_certificate", "engine/pipeline.py", "build_certificate"),
    ("  x509 builder .sign (Rust: encode + sign)", "cryptography/x509/base.py", "sign"),
    ("record_issued", "hosts/service/ca.py", "record_issued"),
    (
        "  store.record_certificate (token + certificate, one commit)",
        "hosts/store/sqlite/certificates.py",
        "record_certificate",
    ),
    ("  sqlite3 Connection.execute (all)", "", "<method 'execute' of 'sqlite3.Connection'"),
    ("chain_json", "hosts/http/wire.py", "chain_json"),
)


def _profile_groups(stats: pstats.Stats, calls: int) -> list[dict[str, Any]]:
    table: Mapping[tuple[str, int, str], tuple[int, int, float, float, Any]]
    table = stats.stats  # type: ignore[attr-defined]
    out = []
    for label, file_part, func in _PROFILE_GROUPS:
        total = 0.0
        found = False
        for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in table.items():
            if file_part and not filename.endswith(file_part):
                continue
            if name == func or (func.startswith("<") and name.startswith(func)):
                total += ct
                found = True
        if not found:  # not called (or renamed) in this version of the code
            continue
        out.append({"function": label, "cumulative_us_per_issuance": rounded(total / calls * 1e6)})
    return out


def run_profile(
    work_dir: Path,
    progress: Progress,
    out_stem: Path,
    *,
    n: int = 400,
    key_type: KeyType = KeyType.P256,
) -> dict[str, Any]:
    """cProfile over *n* issuances (sync=full); writes OUT_STEM.pstats and OUT_STEM.txt.

    cProfile adds per-call overhead, so absolute numbers are inflated; read
    the shares, and take the rates from the inprocess section.
    """
    progress(f"profile {key_type.value}: preparing {n} requests")
    requests = make_client_requests(n + 10, KeyType.P256, prefix="profile")
    with BenchCA.create(work_dir / "profile", key_type, ("full",)) as ca:
        authority = ca.authorities["full"]
        for body in ca.bodies(requests[:10]):
            sign_body(authority, body)
        bodies = ca.bodies(requests[10:])
        profiler = cProfile.Profile()
        progress(f"profile {key_type.value}: {n} issuances under cProfile")
        profiler.enable()
        for body in bodies:
            sign_body(authority, body)
        profiler.disable()
        flame = None
        if servers.FLAME_DIR is not None:
            # The same work without cProfile, sampled from outside by py-spy.
            flame = servers.FlameRecorder(
                os.getpid(), servers.FLAME_DIR / "sign_body-inprocess.svg"
            )
            time.sleep(0.5)  # py-spy attaches
            progress(f"profile {key_type.value}: {n} issuances sampled by py-spy")
            try:
                for body in ca.bodies(requests[10:]):
                    sign_body(authority, body)
            finally:
                flame.stop()
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    pstats_path = out_stem.with_suffix(".pstats")
    text_path = out_stem.with_suffix(".txt")
    profiler.dump_stats(str(pstats_path))
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    groups = _profile_groups(stats, n)
    buffer.write(f"cProfile of {n} x sign_body ({key_type.value} issuer, sync=full)\n\n")
    buffer.write("Grouped, cumulative µs per issuance (profiler overhead included):\n")
    for group in groups:
        buffer.write(f"  {group['function']:42} {group['cumulative_us_per_issuance']:10.1f}\n")
    buffer.write("\n")
    stats.strip_dirs().sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(20)
    text_path.write_text(buffer.getvalue())
    return {
        "key_type": key_type.value,
        "issuances": n,
        "groups": groups,
        "pstats": str(pstats_path),
        "text": str(text_path),
        "flame": None if flame is None else str(flame.out),
    }


def add_options(parser: argparse.ArgumentParser) -> None:
    """None of its own: ``--profile`` (or ``--only profile``) adds it, ``-n`` sizes it."""


def run(context: RunContext) -> dict[str, Any]:
    return run_profile(
        context.work_dir,
        context.progress,
        context.out_dir / f"profile-{context.stamp}",
        n=context.size("issuances", "profile_n"),
    )
