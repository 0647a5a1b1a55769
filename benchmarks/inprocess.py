"""The signing path in process: ``Authority.sign`` against the crypto-only limit.

For each issuer key type a fresh CA is created in a temporary directory and
loaded twice, once per SQLite ``synchronous`` setting (each with its own
database file). Requests (CSR + one-time token) are prepared before the clock
starts; the timed region is the full ``Authority.sign({"csr", "ott"})``: token
verification, CSR parsing and signature check, policy, certificate build and
signature, and the two store writes (used token, issued certificate).
Repetitions of the two settings are interleaved so that drift on a busy
machine affects both alike; the headline figure is the median repetition.

The crypto-only limit is measured in the same run, with the same keys: one
token signature verification (ES256, the provisioner's key) + one CSR
self-signature check (the client key) + one raw signature by the issuer key
of a message the size of the certificate's TBS part. Nothing can issue faster
than ``1 / (sum of the three)`` per core, so ``issuances/s ÷ limit`` is the
share of the per-issuance time spent in unavoidable public-key work.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from engine.jose import CompactJWS, PublicKey, parse_compact, verify_signature
from engine.keys import KeyType
from engine.signer import SoftwareSigner
from hosts.core.authority import Authority
from hosts.core.init import DEFAULT_PROVISIONER
from hosts.core.sqlite_store import SQLiteStore
from plugins.jwk import JWKProvisioner

from .common import (
    PASSWORD,
    SIGN_PATH,
    BenchmarkError,
    ClientRequest,
    Progress,
    create_ca,
    make_client_requests,
    median,
    mint_tokens,
    percentile,
    provisioner_key,
    rounded,
    sign_bodies,
    spread,
)

BASE_URL = "https://bench.test"
SYNC_MODES = ("full", "normal")


@dataclass(frozen=True)
class InprocessParams:
    key_types: tuple[KeyType, ...] = (KeyType.P256, KeyType.P384, KeyType.ED25519, KeyType.RSA2048)
    n: int = 400
    repetitions: int = 5
    warmup: int = 20
    client_key_type: KeyType = KeyType.P256
    sync_modes: tuple[str, ...] = SYNC_MODES

    def describe(self) -> dict[str, Any]:
        return {
            "issuer_key_types": [k.value for k in self.key_types],
            "issuances_per_repetition": self.n,
            "repetitions": self.repetitions,
            "warmup_issuances": self.warmup,
            "client_key_type": self.client_key_type.value,
            "sync_modes": list(self.sync_modes),
            "token_algorithm": "ES256 (the default JWK provisioner key is P-256)",
            "base_url": BASE_URL,
        }


# --- a loaded benchmark CA ------------------------------------------------------


@dataclass
class BenchCA:
    """A CA on disk with one loaded ``Authority`` per store setting."""

    key_type: KeyType
    data_dir: Path
    authorities: dict[str, Authority]
    token_key: Any
    provisioner: JWKProvisioner
    audience: str = BASE_URL + SIGN_PATH
    issued: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, work_dir: Path, key_type: KeyType, sync_modes: Sequence[str]) -> BenchCA:
        slug = key_type.value.lower().replace("-", "")
        data_dir = work_dir / f"ca-{slug}"
        create_ca(data_dir, key_type)
        authorities: dict[str, Authority] = {}
        try:
            for mode in sync_modes:
                store = SQLiteStore(data_dir / "db" / f"bench-{mode}.sqlite", synchronous=mode)
                authority = Authority.load(data_dir, PASSWORD, store=store)
                authority.set_base_urls([BASE_URL])
                authorities[mode] = authority
            first = next(iter(authorities.values()))
            provisioner = first.provisioners[DEFAULT_PROVISIONER]
            if not isinstance(provisioner, JWKProvisioner):
                raise BenchmarkError("the default provisioner is not a JWK provisioner")
            return cls(
                key_type=key_type,
                data_dir=data_dir,
                authorities=authorities,
                token_key=provisioner_key(data_dir),
                provisioner=provisioner,
                issued={mode: 0 for mode in authorities},
            )
        except BaseException:
            for authority in authorities.values():
                authority.close()
            raise

    def bodies(self, requests: Sequence[ClientRequest]) -> list[dict[str, str]]:
        tokens = mint_tokens(
            self.token_key, requests, self.audience, provisioner=self.provisioner.name
        )
        return sign_bodies(requests, tokens)

    def close(self) -> None:
        for authority in self.authorities.values():
            authority.close()

    def __enter__(self) -> BenchCA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def effective_synchronous(authority: Authority) -> str | None:
    """What SQLite reports for PRAGMA synchronous on the store's own connection."""
    db = getattr(authority.store, "_db", None)
    if db is None:
        return None
    value = int(db.execute("PRAGMA synchronous").fetchone()[0])
    return {0: "off", 1: "normal", 2: "full", 3: "extra"}.get(value, str(value))


def timed_issuance(authority: Authority, bodies: Sequence[Mapping[str, str]]) -> list[float]:
    """Issue one certificate per body; return the per-issuance seconds (loop excluded)."""
    sign = authority.sign
    clock = time.perf_counter
    durations = [0.0] * len(bodies)
    for i, body in enumerate(bodies):
        started = clock()
        response = sign(body)
        durations[i] = clock() - started
        if "crt" not in response:
            raise BenchmarkError("Authority.sign returned no certificate")
    return durations


def latency_summary(durations: Sequence[float]) -> dict[str, float]:
    return {
        "p50": rounded(percentile(durations, 0.50) * 1e3),
        "p99": rounded(percentile(durations, 0.99) * 1e3),
        "max": rounded(max(durations) * 1e3),
    }


# --- the crypto-only limit ---------------------------------------------------------


def _per_op(operation: Callable[[Any], object], items: Sequence[Any]) -> float:
    clock = time.perf_counter
    started = clock()
    for item in items:
        operation(item)
    return (clock() - started) / len(items)


class CryptoProbe:
    """The three public-key operations an issuance cannot avoid, each timed alone.

    Prepared once (tokens minted and parsed, TBS-sized messages drawn); each
    :meth:`measure` is one repetition, so repetitions can be interleaved with
    the issuance repetitions and see the same machine conditions.
    """

    def __init__(self, ca: BenchCA, requests: Sequence[ClientRequest], tbs_size: int) -> None:
        self.public_key: PublicKey = ca.provisioner.public_key
        tokens = mint_tokens(ca.token_key, requests, ca.audience, provisioner=ca.provisioner.name)
        self.parsed = [parse_compact(t) for t in tokens]
        authority = next(iter(ca.authorities.values()))
        issuer = authority.issuers[ca.provisioner.issuer]
        self.signer = SoftwareSigner(issuer.signer.private_key)
        self.messages = [os.urandom(tbs_size) for _ in requests]
        self.csr_ders = [r.csr_der for r in requests]
        self.tbs_size = tbs_size
        self.token_s: list[float] = []
        self.csr_s: list[float] = []
        self.sign_s: list[float] = []

    def _verify_token(self, jws: CompactJWS) -> None:
        verify_signature(jws.alg, self.public_key, jws.signing_input, jws.signature)

    @staticmethod
    def _verify_csr(csr: x509.CertificateSigningRequest) -> None:
        # What parse_csr cannot avoid: load the request's key, check the self-signature.
        key = csr.public_key()
        algorithm = csr.signature_hash_algorithm
        if isinstance(key, ec.EllipticCurvePublicKey):
            assert algorithm is not None
            key.verify(csr.signature, csr.tbs_certrequest_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            assert algorithm is not None
            key.verify(csr.signature, csr.tbs_certrequest_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(csr.signature, csr.tbs_certrequest_bytes)
        else:
            raise BenchmarkError(f"no crypto probe for {type(key).__name__} client keys")

    def measure(self) -> float:
        """One repetition of each; returns this repetition's limit per second."""
        self.token_s.append(_per_op(self._verify_token, self.parsed))
        fresh = [x509.load_der_x509_csr(der) for der in self.csr_ders]  # loaded untimed
        self.csr_s.append(_per_op(self._verify_csr, fresh))
        self.sign_s.append(_per_op(self.signer.sign, self.messages))
        return 1 / (self.token_s[-1] + self.csr_s[-1] + self.sign_s[-1])

    def summary(self) -> dict[str, Any]:
        token_us = median(self.token_s) * 1e6
        csr_us = median(self.csr_s) * 1e6
        sign_us = median(self.sign_s) * 1e6
        total_us = token_us + csr_us + sign_us
        hash_algorithm = self.signer.hash_algorithm
        return {
            "token_verify_us": rounded(token_us, 2),
            "csr_verify_us": rounded(csr_us, 2),
            "issuer_sign_us": rounded(sign_us, 2),
            "sum_us": rounded(total_us, 2),
            "limit_per_s": rounded(1e6 / total_us, 1),
            "ops_per_repetition": len(self.parsed),
            "tbs_bytes": self.tbs_size,
            "token_algorithm": self.parsed[0].alg,
            "issuer_hash": hash_algorithm.name if hash_algorithm is not None else "none (EdDSA)",
        }


# --- the per-key-type benchmark ---------------------------------------------------


def bench_key_type(
    key_type: KeyType,
    params: InprocessParams,
    requests: Sequence[ClientRequest],
    work_dir: Path,
    progress: Progress,
) -> dict[str, Any]:
    n, reps, warmup = params.n, params.repetitions, params.warmup
    progress(f"inprocess {key_type.value}: creating the CA and loading it")
    with BenchCA.create(work_dir, key_type, params.sync_modes) as ca:
        tbs_size = 0
        for mode, authority in ca.authorities.items():
            for body in ca.bodies(requests[:warmup]):
                response = authority.sign(body)
                ca.issued[mode] += 1
                cert = x509.load_pem_x509_certificate(response["crt"].encode())
                tbs_size = len(cert.tbs_certificate_bytes)
        probe = CryptoProbe(ca, requests[warmup : warmup + n], tbs_size)
        durations: dict[str, list[float]] = {mode: [] for mode in ca.authorities}
        rates: dict[str, list[float]] = {mode: [] for mode in ca.authorities}
        cpu_us: dict[str, list[float]] = {mode: [] for mode in ca.authorities}
        for rep in range(reps):
            chunk = requests[warmup + rep * n : warmup + (rep + 1) * n]
            line = []
            for mode, authority in ca.authorities.items():
                bodies = ca.bodies(chunk)
                cpu_start = time.process_time()
                clock_start = time.perf_counter()
                per_op = timed_issuance(authority, bodies)
                elapsed = time.perf_counter() - clock_start
                cpu_us[mode].append((time.process_time() - cpu_start) / len(bodies) * 1e6)
                ca.issued[mode] += len(bodies)
                durations[mode].extend(per_op)
                rates[mode].append(len(bodies) / elapsed)
                line.append(f"sync={mode} {rates[mode][-1]:7.1f}/s")
            line.append(f"crypto limit {probe.measure():7.1f}/s")
            progress(f"inprocess {key_type.value}: repetition {rep + 1}/{reps}: " + "  ".join(line))
        crypto = probe.summary()
        limit = float(crypto["limit_per_s"])
        out: dict[str, Any] = {
            "issuer_key_type": key_type.value,
            "client_key_type": params.client_key_type.value,
            "crypto": crypto,
        }
        for mode, authority in ca.authorities.items():
            stored = authority.store.count_certificates()
            if stored != ca.issued[mode]:
                raise BenchmarkError(
                    f"{key_type.value} sync={mode}: {ca.issued[mode]} issued, {stored} stored"
                )
            rate = median(rates[mode])
            out[f"sync_{mode}"] = {
                "synchronous_effective": effective_synchronous(authority),
                "issuances_per_s": rounded(rate, 1),
                "per_repetition": spread(rates[mode]),
                "latency_ms": latency_summary(durations[mode]),
                "us_per_issuance": rounded(1e6 / rate, 1),
                "non_crypto_us_per_issuance": rounded(1e6 / rate - float(crypto["sum_us"]), 1),
                "ratio_to_crypto_limit": rounded(rate / limit, 3),
                # The process's CPU time (user + system, every thread) per issuance: what
                # the rate would be bound by if the commits' fsync waits were overlapped
                # with other requests' work, as the hosts' group commit does.
                "cpu_us_per_issuance": rounded(median(cpu_us[mode]), 1),
                "crypto_share_of_cpu": rounded(float(crypto["sum_us"]) / median(cpu_us[mode]), 3),
            }
    return out


def run_inprocess(params: InprocessParams, work_dir: Path, progress: Progress) -> dict[str, Any]:
    total = params.warmup + params.n * params.repetitions
    progress(
        f"inprocess: preparing {total} {params.client_key_type.value} client keys and CSRs"
        " (shared by every CA; tokens are minted per CA)"
    )
    requests = make_client_requests(total, params.client_key_type)
    results: dict[str, Any] = {}
    for key_type in params.key_types:
        results[key_type.value] = bench_key_type(key_type, params, requests, work_dir, progress)
    return {"parameters": params.describe(), "key_types": results}


# --- where the time goes --------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A function Authority.sign calls, wrapped with a timer while the breakdown runs."""

    label: str
    where: str  # "authority", "store", "plugins", "provisioners", or a module/class path
    attr: str
    description: str
    parent: str | None = None


# Looked up by name, so a refactoring of Authority.sign does not break the breakdown:
# a probe whose function no longer exists (or is no longer called) is left out, and
# whatever is no longer covered shows up as "unaccounted".
PROBES = (
    Probe(
        "parse_csr",
        "hosts.core.authority",
        "parse_csr",
        "load the PEM, check the CSR self-signature, read the names",
    ),
    Probe(
        "Authority._token_provisioner",
        "authority",
        "_token_provisioner",
        "parse the token (first time) to find the provisioner named by iss",
    ),
    Probe(
        "JWKProvisioner.authorize_sign",
        "provisioners",
        "authorize_sign",
        "parse the token again, verify it, check claims, build the sign policy",
    ),
    Probe(
        "jose.verify_signature",
        "engine.jose",
        "verify_signature",
        "the ES256 token signature check",
        parent="JWKProvisioner.authorize_sign",
    ),
    Probe("plugins.check_sign", "plugins", "check_sign", "org-wide policy hooks"),
    Probe(
        "prepare_certificate",
        "hosts.core.authority",
        "prepare_certificate",
        "validators, template, modifiers, validity (nothing signed yet)",
    ),
    Probe(
        "PreparedCertificate.sign",
        "engine.pipeline:PreparedCertificate",
        "sign",
        "serial, certificate build, issuer signature, DER",
    ),
    Probe(
        "x509 CertificateBuilder.sign",
        "cryptography.x509:CertificateBuilder",
        "sign",
        "encoding and signing in cryptography's Rust code",
        parent="PreparedCertificate.sign",
    ),
    Probe(
        "Authority.record_issued",
        "authority",
        "record_issued",
        "store the certificate and the used token, log it, call the audit hook",
    ),
    Probe(
        "store.record_certificate",
        "store",
        "record_certificate",
        "one SQLite transaction: token jti + certificate, one commit",
        parent="Authority.record_issued",
    ),
    Probe("Authority.chain_pem", "authority", "chain_pem", "the leaf and chain as PEM"),
)


def _probe_targets(authority: Authority, where: str) -> list[object]:
    import importlib

    if where == "authority":
        return [authority]
    if where == "store":
        return [authority.store]
    if where == "plugins":
        return [authority.plugins]
    if where == "provisioners":
        return list(authority.provisioners.values())
    module_name, _, class_name = where.partition(":")
    module = importlib.import_module(module_name)
    return [getattr(module, class_name)] if class_name else [module]


class Instrumented:
    """Wraps the probes' functions with timers; :meth:`restore` puts the originals back."""

    def __init__(self, authority: Authority, probes: Sequence[Probe] = PROBES) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []
        try:
            for probe in probes:
                for target in _probe_targets(authority, probe.where):
                    self._patch(target, probe)
        except BaseException:
            self.restore()
            raise

    def _wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter
        seconds, calls = self.seconds, self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[label] = seconds.get(label, 0.0) + clock() - started
                calls[label] = calls.get(label, 0) + 1

        return timed

    def _patch(self, target: object, probe: Probe) -> None:
        name = probe.attr
        if isinstance(target, type | ModuleType):
            original = vars(target).get(name)
            if not callable(original):
                return
            setattr(target, name, self._wrap(probe.label, original))
            self._undo.append(lambda: setattr(target, name, original))
            return
        bound = getattr(target, name, None)
        if not callable(bound):
            return
        own = name in vars(target)
        setattr(target, name, self._wrap(probe.label, bound))
        if own:
            self._undo.append(lambda: setattr(target, name, bound))
        else:
            self._undo.append(lambda: delattr(target, name))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


BREAKDOWN_CHUNK = 10


def run_breakdown(
    work_dir: Path,
    progress: Progress,
    *,
    key_type: KeyType = KeyType.P256,
    n: int = 400,
    repetitions: int = 5,
    warmup: int = 20,
    sync: str = "full",
) -> dict[str, Any]:
    """Mean µs per issuance in each function Authority.sign calls, next to the whole call.

    Each repetition issues *n* certificates with the probes in place and *n*
    without them (the "whole" figure, timed exactly like the inprocess section),
    alternating every ``BREAKDOWN_CHUNK`` issuances.
    """
    total = warmup + 2 * n * repetitions
    progress(f"breakdown {key_type.value} sync={sync}: preparing {total} requests")
    requests = make_client_requests(total, KeyType.P256, prefix="stage")
    per_rep: dict[str, list[float]] = {}
    whole: list[float] = []
    with BenchCA.create(work_dir / "breakdown", key_type, (sync,)) as ca:
        authority = ca.authorities[sync]
        for body in ca.bodies(requests[:warmup]):
            authority.sign(body)
        for rep in range(repetitions):
            base = warmup + 2 * rep * n
            staged_bodies = ca.bodies(requests[base : base + n])
            whole_bodies = ca.bodies(requests[base + n : base + 2 * n])
            # Probed and plain issuances alternate in small chunks, so that a slow
            # patch of fsyncs lands on both sides alike.
            seconds: dict[str, float] = {}
            whole_s = 0.0
            for start in range(0, n, BREAKDOWN_CHUNK):
                end = start + BREAKDOWN_CHUNK
                probes = Instrumented(authority)
                try:
                    timed_issuance(authority, staged_bodies[start:end])
                finally:
                    probes.restore()
                for label, value in probes.seconds.items():
                    seconds[label] = seconds.get(label, 0.0) + value
                whole_s += sum(timed_issuance(authority, whole_bodies[start:end]))
            for label, value in seconds.items():
                per_rep.setdefault(label, []).append(value / n)
            whole.append(whole_s / n)
            # top-level probes do not overlap; nested ones are part of their parent
            top = sum(v for k, v in seconds.items() if _probe(k).parent is None)
            progress(
                f"breakdown {key_type.value}: repetition {rep + 1}/{repetitions}:"
                f" probed {top / n * 1e6:7.1f} µs, whole {whole[-1] * 1e6:7.1f} µs"
            )
    stages: list[dict[str, Any]] = []
    top_level = 0.0
    for probe in PROBES:
        if probe.label not in per_rep:
            continue
        us = median(per_rep[probe.label]) * 1e6
        if probe.parent is None:
            top_level += us
        stages.append(
            {
                "name": probe.label,
                "us": rounded(us, 1),
                "parent": probe.parent,
                "description": probe.description,
            }
        )
    measured = median(whole) * 1e6
    return {
        "key_type": key_type.value,
        "sync": sync,
        "issuances_per_repetition": n,
        "repetitions": repetitions,
        "stages": stages,
        "top_level_total_us": rounded(top_level, 1),
        "authority_sign_us": rounded(measured, 1),
        "unaccounted_us": rounded(measured - top_level, 1),
    }


def _probe(label: str) -> Probe:
    return next(p for p in PROBES if p.label == label)


# --- cProfile of the P-256 path ---------------------------------------------------

# (label, file suffix, function name) for the grouped profile summary. Rust getters such as
# CSR.is_signature_valid are invisible to cProfile; their time lands in the caller.
_PROFILE_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("Authority.sign (total)", "hosts/core/authority.py", "sign"),
    ("parse_csr (load + verify CSR)", "engine/csr.py", "parse_csr"),
    ("token: _token_provisioner (parse #1)", "hosts/core/authority.py", "_token_provisioner"),
    ("token: JWKProvisioner.authorize_sign", "plugins/jwk/provisioner.py", "authorize_sign"),
    ("  jose.verify_signature", "engine/jose.py", "verify_signature"),
    ("  jose.parse_compact (both parses)", "engine/jose.py", "parse_compact"),
    ("prepare_certificate (policy, template)", "engine/pipeline.py", "prepare_certificate"),
    ("PreparedCertificate.sign (build + sign)", "engine/pipeline.py", "sign"),
    ("  build_certificate", "engine/pipeline.py", "build_certificate"),
    ("  x509 builder .sign (Rust: encode + sign)", "cryptography/x509/base.py", "sign"),
    ("record_issued", "hosts/core/authority.py", "record_issued"),
    (
        "  store.record_certificate (token + certificate, one commit)",
        "hosts/core/sqlite_store.py",
        "record_certificate",
    ),
    ("  sqlite3 Connection.execute (all)", "", "<method 'execute' of 'sqlite3.Connection'"),
    ("chain_pem", "hosts/core/authority.py", "chain_pem"),
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
            authority.sign(body)
        bodies = ca.bodies(requests[10:])
        profiler = cProfile.Profile()
        progress(f"profile {key_type.value}: {n} issuances under cProfile")
        profiler.enable()
        for body in bodies:
            authority.sign(body)
        profiler.disable()
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    pstats_path = out_stem.with_suffix(".pstats")
    text_path = out_stem.with_suffix(".txt")
    profiler.dump_stats(str(pstats_path))
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    groups = _profile_groups(stats, n)
    buffer.write(f"cProfile of {n} x Authority.sign ({key_type.value} issuer, sync=full)\n\n")
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
    }
