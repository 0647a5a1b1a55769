"""The signing path in process: ``sign_body`` (hosts/http/api.py) against the crypto-only limit.

For each issuer key type a fresh CA is created in a temporary directory and
loaded twice, once per SQLite ``synchronous`` setting (each with its own
database file). Requests (CSR + one-time token) are prepared before the clock
starts; the timed region is the full ``sign_body({"csr", "ott"})``: token
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

import argparse
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from engine.jose import CompactJWS, PublicKey, parse_compact, verify_signature
from engine.keys import KeyType
from engine.signer import SoftwareSigner
from hosts.core.authority import Authority
from hosts.core.init import DEFAULT_PROVISIONER
from hosts.http.api import sign_body
from hosts.store.sqlite import open_sqlite
from plugins.jwk import JWKProvisioner

from ..common import (
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
from . import RunContext, parse_key_type, parse_positive

NAME = "inprocess"
BASE_URL = "https://bench.test"
SYNC_MODES = ("full", "normal")
DEFAULT_KEY_TYPES = (KeyType.P256, KeyType.P384, KeyType.ED25519, KeyType.RSA2048)
SIZE_OPTIONS = ("issuances", "repetitions", "key_type")

SUMMARY = """\
  inprocess    sign_body per issuer key type (P-256, P-384, Ed25519, RSA-2048),
               SQLite store at synchronous=full and at synchronous=normal, next to the
               crypto-only limit measured in the same run.
"""
FIGURES = """\
  inprocess
    sync=full/s, sync=normal/s
                 certificates issued per second by sign_body({csr, ott}) in one
                 thread: token verify, CSR parse + signature check, policy, build, issuer
                 signature, two SQLite commits (used token, certificate). Requests are
                 prepared before timing; the figure is the median of the repetitions.
                 full = the default (every commit fsynced); normal = WAL fsync only at
                 checkpoints (durable against a crash of devid, not of the machine).
    crypto limit/s
                 1 / (token verify + CSR verify + issuer sign), each timed alone in a
                 tight loop with the same keys: the ES256 token signature via
                 engine.jose.verify_signature, the client CSR's self-signature
                 (is_signature_valid on a freshly loaded CSR), and one raw signature by
                 the issuer key over a message the size of a real TBS certificate
                 (engine.signer.SoftwareSigner.sign). No issuance can beat it on one core.
    full÷limit, normal÷limit
                 issuances/s ÷ crypto limit/s: the share of an issuance spent in
                 unavoidable public-key work. 1.0 would mean zero overhead; it is
                 comparable across machines where absolute rates are not.
    p50 ms, p99 ms
                 per-issuance latency percentiles (sync=full), all repetitions pooled.
    non-crypto µs
                 1e6 / (sync=full rate) - crypto sum: what the Python, X.509 encoding
                 and the store cost per issuance beyond the three public-key operations.
    token verify, CSR verify, issuer sign, sum (µs)
                 the three parts of the crypto-only limit, median per operation.
"""


@dataclass(frozen=True)
class InprocessParams:
    key_types: tuple[KeyType, ...] = DEFAULT_KEY_TYPES
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
                stores = open_sqlite(data_dir / "db" / f"bench-{mode}.sqlite", synchronous=mode)
                authority = Authority.load(data_dir, PASSWORD, stores=stores)
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
    database = getattr(authority.stores.certificates, "database", None)
    synchronous = getattr(database, "synchronous", None)
    return str(synchronous()) if callable(synchronous) else None


def timed_issuance(authority: Authority, bodies: Sequence[Mapping[str, str]]) -> list[float]:
    """Issue one certificate per body; return the per-issuance seconds (loop excluded)."""
    clock = time.perf_counter
    durations = [0.0] * len(bodies)
    for i, body in enumerate(bodies):
        started = clock()
        response = sign_body(authority, body)
        durations[i] = clock() - started
        if "crt" not in response:
            raise BenchmarkError("signing returned no certificate")
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
                response = sign_body(authority, body)
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
            stored = authority.stores.certificates.count_certificates()
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


# --- the section ------------------------------------------------------------------------------


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inprocess, breakdown and profile")
    group.add_argument(
        "--key-type",
        action="append",
        type=parse_key_type,
        metavar="TYPE",
        help="in-process issuer key type (repeatable; default P-256, P-384, Ed25519, RSA-2048)",
    )
    group.add_argument(
        "-n",
        "--issuances",
        type=parse_positive,
        metavar="N",
        help="in-process issuances per repetition (default 500; quick 100)",
    )
    group.add_argument(
        "--repetitions",
        type=parse_positive,
        metavar="R",
        help="in-process repetitions; the median is reported (default 7; quick 3)",
    )


def params_for(context: RunContext) -> InprocessParams:
    n = context.size("issuances", "n")
    return InprocessParams(
        key_types=tuple(context.options.key_type or DEFAULT_KEY_TYPES),
        n=n,
        repetitions=context.size("repetitions", "repetitions"),
        warmup=min(context.sizes["warmup"], n),
        client_key_type=context.options.client_key_type,
    )


def run(context: RunContext) -> dict[str, Any]:
    return run_inprocess(params_for(context), context.work_dir, context.progress)


def reference_rate(context: RunContext) -> tuple[float | None, str]:
    """The in-process P-256 sync=full rate the host figures are divided by: from this
    run's inprocess section, else measured now (once per run)."""
    cached = context.shared.get("inprocess_reference")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    reference = _reference_rate(context)
    context.shared["inprocess_reference"] = reference
    return reference


def _reference_rate(context: RunContext) -> tuple[float | None, str]:
    try:
        rate = context.results["inprocess"]["key_types"][KeyType.P256.value]["sync_full"]
        return float(rate["issuances_per_s"]), "inprocess section, same run"
    except (KeyError, TypeError):
        pass
    context.progress("http: measuring the in-process P-256 sync=full reference first")
    params = params_for(context)
    reference = InprocessParams(
        key_types=(KeyType.P256,),
        n=params.n,
        repetitions=params.repetitions,
        warmup=params.warmup,
        client_key_type=params.client_key_type,
        sync_modes=("full",),
    )
    measured = run_inprocess(reference, context.work_dir / "reference", context.progress)
    rate = measured["key_types"][KeyType.P256.value]["sync_full"]["issuances_per_s"]
    return float(rate), "reference run (P-256, sync=full), same run"
