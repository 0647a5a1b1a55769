"""OIDC: a person's certificate through the OIDC provisioner (``POST /1.0/sign`` with an
ID token as ``ott``).

Set up, untimed: the section serves an OpenID provider itself, on 127.0.0.1 in a
thread of this process (stdlib ``http.server``): ``/.well-known/openid-configuration``
(issuer ``http://127.0.0.1:PORT``, the ``jwks_uri``) and ``/jwks`` with an RSA-2048
key (RS256) and a P-256 key (ES256), each with a ``kid``, both served with
``Cache-Control: max-age=86400``. It signs the ID tokens itself
(:func:`engine.jose.sign_compact`): ``iss``, ``aud`` = the client ID, ``sub``, a
verified ``email`` of ``example.com``, ``groups``, ``iat``, ``exp`` an hour later and a
``jti`` of its own (tokens are one-time). A fresh P-256 CA per part (one for the
in-process part, one per host) gets an ``OIDC`` provisioner ``bench-sso`` trusting that
provider (client ``bench-cli``, domains ``example.com``, groups ``engineering``,
algorithms RS256 and ES256). Every token and CSR (a fresh P-256 key each, an empty
subject: the CA fills in the person's names) is made before the clock starts, and one
untimed request per CA comes first: it makes the CA fetch the discovery document and
the JWK set, which it then holds for the whole run (the provider's request counts are
recorded to show it).

Two kinds are timed, by the ID token's algorithm: ``rs256`` and ``es256``.

In process, the CSR is read (:func:`engine.csr.parse_csr`, its signature checked) and
``Authority.signing.sign`` called with it and the token, one call at a time (CPU = this
thread's CPU time, rate = calls over wall time; the kinds' repetitions interleave, the
median is reported). In the same repetitions, the CA's JWK provisioner signs the same
way (an ES256 token from ``devid token``'s key, a CSR naming its subject): ``÷ JWK``
is each kind's CPU per request over that one, from the same run.

Through each host (``devid serve --host quart`` and ``--host raw``, started as the
http section starts them, pinned to the first CPU, the load generator to the second),
``POST /1.0/sign`` with ``{"csr", "ott"}`` at each concurrency level over keep-alive
connections, rounds interleaving hosts, kinds and levels; server CPU from /proc per
request. Every reply is read afterwards (untimed): 201, a certificate issued by the
TLS CA (its signature checked) naming the token's email; one that is not fails the
section.

The public-key operations a request cannot avoid are timed alone in the same run: the
ID token's signature (RS256 with the provider's RSA-2048 key, ES256 with its P-256
key), the CSR's self-signature and the certificate's signature by the TLS CA's key.
``crypto ÷ CPU`` is their share of the CPU per request.

All traffic goes to 127.0.0.1; the servers and the provider are always stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from agent.caclient import make_csr
from engine.csr import parse_csr
from engine.jose import (
    CompactJWS,
    PrivateKey,
    PublicKey,
    jwk_from_public_key,
    parse_compact,
    sign_compact,
    verify_signature,
)
from engine.keys import KeyType
from hosts.core.authority import Authority
from hosts.core.init import DEFAULT_PROVISIONER
from hosts.service.signing import SignRequest
from hosts.testing.ports import LOOPBACK
from plugins.jwk import JWKProvisioner

from ..common import (
    PASSWORD,
    SIGN_PATH,
    BenchmarkError,
    Progress,
    cpu_us_per_call,
    create_ca,
    make_client_requests,
    median,
    mint_tokens,
    provisioner_key,
    rounded,
)
from ..loadgen import Pool, drive
from ..rounds import (
    HostKindPlan,
    RoundSample,
    Started,
    collecting,
    inprocess_figures,
    kind_figures,
    kind_rounds,
    serve_hosts,
    server_figures,
    timed_level,
)
from ..servers import Pinning, ServerProcess
from . import (
    RunContext,
    add_count_option,
    add_hosts_option,
    add_levels_option,
    requests_for,
)
from .inprocess import BASE_URL

NAME = "oidc"
HOSTS = ("quart", "raw")
#: The timed kinds: the ID token's algorithm.
KINDS = ("rs256", "es256")
#: In process only: the JWK provisioner's signing, for the ÷ JWK ratio.
JWK = "jwk"
ALGORITHMS = {"rs256": "RS256", "es256": "ES256"}
DEFAULT_CONCURRENCY = (1, 8)
SIZE_OPTIONS = ("oidc_concurrency", "oidc_requests", "oidc_n")
PROVISIONER = "bench-sso"
CLIENT_ID = "bench-cli"
DOMAIN = "example.com"
GROUPS = ["engineering", "staff"]
ADMITTED_GROUPS = ["engineering"]
ISSUER = "tls"
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks"
#: ID tokens live an hour (the provisioner's limit is two): made before the clock, they
#: stay valid through any run.
TOKEN_LIFETIME_S = 3600
#: Items each crypto operation is timed over, per repetition.
CRYPTO_ITEMS = 100
RSA_BITS = 2048
#: What each kind is, for the JSON and the table.
WHAT = {
    "rs256": "an ID token signed RS256 (the provider's RSA-2048 key) + a CSR, empty subject",
    "es256": "an ID token signed ES256 (the provider's P-256 key) + a CSR, empty subject",
    JWK: "the JWK provisioner: a devid token (ES256) + a CSR naming its subject",
}
CRYPTO_STEPS = ("token_verify", "csr_verify", "certificate_sign")

SUMMARY = """\
  oidc         a person's certificate through the OIDC provisioner: POST /1.0/sign with
               an ID token (RS256 and ES256, from a provider the section serves on
               127.0.0.1) in process (Authority.signing.sign, beside the JWK
               provisioner's) and through `devid serve --host quart` and `--host raw`
               at concurrency 1 and 8, next to the crypto-only cost.
"""
FIGURES = """\
  oidc (one row per place, kind and concurrency level)
    req/s        certificates issued (201, each read afterwards: issued by the TLS CA,
                 naming the token's email) per second; in process: one call at a time,
                 median of the repetitions; through a host: median of the rounds.
    CPU µs/req   in process: this thread's CPU time per call (parse_csr +
                 Authority.signing.sign); through a host: user + system time of the
                 server process ÷ requests (load generator excluded).
    ÷ JWK        in process: CPU per request ÷ the JWK provisioner's, same CA, same run.
    crypto µs    the ID token's signature (RS256: RSA-2048; ES256: P-256), the CSR's
                 self-signature and the certificate's signature by the TLS CA's key,
                 timed alone. crypto÷CPU is their share; rest µs = CPU - crypto.
"""


# --- parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class OIDCParams(HostKindPlan):
    requests: tuple[int, ...] = (100, 300)

    def describe(self) -> dict[str, Any]:
        return {
            "hosts": list(self.hosts),
            "issuer_key_type": KeyType.P256.value,
            "issuer": ISSUER,
            "client_key_type": KeyType.P256.value,
            "provider_keys": {"RS256": f"RSA-{RSA_BITS}", "ES256": "P-256"},
            "token_lifetime_s": TOKEN_LIFETIME_S,
            **self.describe_plan(),
            "inprocess_calls": self.n,
            "inprocess_repetitions": self.repetitions,
            "level_timeout_s": self.level_timeout_s,
            "protocol": "HTTP/1.1 keep-alive over TLS, one connection per concurrent request;"
            f" POST {SIGN_PATH}, application/json {{csr, ott}}",
            "store": "SQLite WAL, synchronous=full (the default config)",
        }


# --- the OpenID provider ---------------------------------------------------------------


class Provider:
    """An OpenID provider on 127.0.0.1: its discovery document and JWK set served from a
    thread of this process, and ID tokens signed here with its keys."""

    def __init__(self) -> None:
        self.keys: dict[str, PrivateKey] = {
            "RS256": rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS),
            "ES256": ec.generate_private_key(ec.SECP256R1()),
        }
        self.kids = {alg: f"bench-{alg.lower()}-{uuid.uuid4().hex[:8]}" for alg in self.keys}
        self.requests: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="oidc-bench-provider", daemon=True
        )
        keys = []
        for alg, key in self.keys.items():
            jwk: dict[str, Any] = dict(jwk_from_public_key(key.public_key()))
            keys.append({**jwk, "kid": self.kids[alg], "alg": alg, "use": "sig"})
        self._documents = {
            DISCOVERY_PATH: json.dumps(
                {
                    "issuer": self.url,
                    "jwks_uri": self.url + JWKS_PATH,
                    "authorization_endpoint": self.url + "/authorize",
                    "token_endpoint": self.url + "/token",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": list(self.keys),
                }
            ).encode(),
            JWKS_PATH: json.dumps({"keys": keys}).encode(),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with provider._lock:
                    provider.requests[path] = provider.requests.get(path, 0) + 1
                body = provider._documents.get(path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "public, max-age=86400")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def public_key(self, alg: str) -> PublicKey:
        key = self.keys[alg].public_key()
        assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        return key

    def token(self, alg: str, email: str, subject: str) -> str:
        """An ID token for the person *email* (verified), one-time (a jti of its own)."""
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": CLIENT_ID,
            "sub": subject,
            "email": email,
            "email_verified": True,
            "groups": GROUPS,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        return sign_compact(claims, self.keys[alg], alg=alg, headers={"kid": self.kids[alg]})

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {path: self.requests.get(path, 0) for path in (DISCOVERY_PATH, JWKS_PATH)}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def serving_provider() -> Iterator[Provider]:
    provider = Provider()
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


# --- the people's requests -------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """One request's identity and CSR (a P-256 key of its own, an empty subject)."""

    email: str
    subject: str
    csr_pem: str
    csr_der: bytes


def make_people(count: int, label: str) -> list[Person]:
    out = []
    for _ in range(count):
        tag = uuid.uuid4().hex[:16]
        key = ec.generate_private_key(ec.SECP256R1())
        csr = make_csr(key, None, [])
        out.append(
            Person(
                email=f"{label}-{tag}@{DOMAIN}",
                subject=f"bench-{tag}",
                csr_pem=csr.public_bytes(Encoding.PEM).decode(),
                csr_der=csr.public_bytes(Encoding.DER),
            )
        )
    return out


@dataclass(frozen=True)
class Prepared:
    """Requests of one kind: each person's CSR and ID token, and the email expected."""

    csrs: list[str]
    tokens: list[str]
    emails: list[str]

    def bodies(self) -> list[bytes]:
        return [
            json.dumps({"csr": c, "ott": t}).encode()
            for c, t in zip(self.csrs, self.tokens, strict=True)
        ]

    def slice(self, start: int, stop: int | None = None) -> Prepared:
        return Prepared(self.csrs[start:stop], self.tokens[start:stop], self.emails[start:stop])


def prepare_kind(provider: Provider, kind: str, people: Sequence[Person]) -> Prepared:
    alg = ALGORITHMS[kind]
    return Prepared(
        [p.csr_pem for p in people],
        [provider.token(alg, p.email, p.subject) for p in people],
        [p.email for p in people],
    )


def check_certificates(
    certificates: Sequence[x509.Certificate], emails: Sequence[str], tls_ca: x509.Certificate
) -> list[str]:
    """Each certificate issued by the TLS CA, naming one of *emails*, each email once."""
    problems: list[str] = []
    wanted = set(emails)
    seen: set[str] = set()
    if len(certificates) != len(emails):
        problems.append(f"{len(certificates)} certificates for {len(emails)} requests")
    for certificate in certificates:
        try:
            certificate.verify_directly_issued_by(tls_ca)
        except (InvalidSignature, ValueError, TypeError) as exc:
            problems.append(f"not issued by the TLS CA: {type(exc).__name__} {exc}")
            continue
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            problems.append("the certificate has no SubjectAlternativeName")
            continue
        names = san.value.get_values_for_type(x509.RFC822Name)
        email = next((n for n in names if n in wanted), None)
        if email is None:
            problems.append(f"the certificate names none of the tokens' emails: {names}")
        elif email in seen:
            problems.append(f"two certificates name {email}")
        else:
            seen.add(email)
    return problems


def check_replies(
    replies: Sequence[bytes], emails: Sequence[str], tls_ca: x509.Certificate
) -> list[str]:
    """Read every ``/1.0/sign`` reply (201 bodies) as a client would, then check them."""
    certificates: list[x509.Certificate] = []
    problems: list[str] = []
    for reply in replies:
        try:
            certificates.append(x509.load_pem_x509_certificate(json.loads(reply)["crt"].encode()))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"unreadable reply: {type(exc).__name__}: {exc}")
    return problems or check_certificates(certificates, emails, tls_ca)


# --- the CAs -----------------------------------------------------------------------------


def prepare_ca(directory: Path, provider: Provider) -> tuple[Path, Path, x509.Certificate]:
    """A fresh P-256 CA with the OIDC provisioner trusting *provider*.

    Returns the CA directory, its root certificate file and the TLS CA's certificate."""
    ca_dir = directory / "ca"
    init = create_ca(ca_dir, KeyType.P256)
    table = (
        f'\n[[provisioners]]\ntype = "OIDC"\nname = "{PROVISIONER}"\nissuer = "{ISSUER}"\n'
        f'provider = "{provider.url}"\nclient_id = "{CLIENT_ID}"\n'
        f'domains = ["{DOMAIN}"]\ngroups = {json.dumps(ADMITTED_GROUPS)}\n'
        f'algorithms = ["RS256", "ES256"]\n'
    )
    with (ca_dir / "devid.toml").open("a") as out:
        out.write(table)
    authority = Authority.load(ca_dir, PASSWORD)
    try:
        tls_ca = authority.issuers[ISSUER].certificate
    finally:
        authority.close()
    return ca_dir, init.root_path, tls_ca


# --- the crypto-only cost ------------------------------------------------------------------


def _token_verifier(key: PublicKey) -> Callable[[CompactJWS], None]:
    """A token's signature check with *key* alone (what ``CompactJWS.verify`` does
    besides reading the claims)."""

    def verify(jws: CompactJWS) -> None:
        verify_signature(jws.alg, key, jws.signing_input, jws.signature)

    return verify


@dataclass
class CryptoProbe:
    """The public-key operations of a request, each timed alone, once per repetition:
    the token's signature per kind, the CSR's and the certificate's."""

    #: Per kind: the token's algorithm and the key that verifies it, and parsed tokens.
    tokens: dict[str, tuple[PublicKey, list[CompactJWS]]]
    csrs: list[bytes]
    signers: dict[str, Callable[[bytes], bytes]]
    tbs: list[bytes]
    samples: dict[str, list[float]] = field(default_factory=dict)

    def measure(self) -> None:
        timed: dict[str, float] = {}
        for kind, (key, parsed) in self.tokens.items():
            timed[f"{kind}_token_verify"] = cpu_us_per_call(_token_verifier(key), parsed)
        fresh = [x509.load_der_x509_csr(der) for der in self.csrs]  # loaded untimed
        timed["csr_verify"] = cpu_us_per_call(lambda c: c.is_signature_valid, fresh)
        for kind, sign in self.signers.items():
            timed[f"{kind}_certificate_sign"] = cpu_us_per_call(sign, self.tbs)
        for name, value in timed.items():
            self.samples.setdefault(name, []).append(value)

    def summary(self, kind: str) -> dict[str, Any]:
        parts = {
            "token_verify": median(self.samples[f"{kind}_token_verify"]),
            "csr_verify": median(self.samples["csr_verify"]),
            "certificate_sign": median(self.samples[f"{kind}_certificate_sign"]),
        }
        return {
            **{f"{name}_us": rounded(value, 2) for name, value in parts.items()},
            "sum_us": rounded(sum(parts.values()), 2),
        }


# --- in process ----------------------------------------------------------------------------


def _sign_all(authority: Authority, prepared: Prepared) -> list[x509.Certificate]:
    sign = authority.signing.sign
    return [
        sign(SignRequest(parse_csr(csr), token)).certificate
        for csr, token in zip(prepared.csrs, prepared.tokens, strict=True)
    ]


def run_inprocess(
    params: OIDCParams, directory: Path, provider: Provider, progress: Progress
) -> dict[str, Any]:
    """``parse_csr`` + ``Authority.signing.sign`` called directly, the kinds (and the JWK
    provisioner's signing) interleaved repetition by repetition."""
    ca_dir, _, tls_ca = prepare_ca(directory, provider)
    count = params.n * params.repetitions
    progress(f"{NAME}: in process: preparing {count * (len(KINDS) + 1) + 3} requests")
    prepared: dict[str, Prepared] = {}
    for kind in KINDS:
        prepared[kind] = prepare_kind(provider, kind, make_people(count + 1, f"inproc-{kind}"))
    # The JWK provisioner's requests, as the inprocess section makes them (5-minute tokens).
    jwk_requests = make_client_requests(count + 1, KeyType.P256, prefix="oidc-jwk")
    jwk_tokens = mint_tokens(
        provisioner_key(ca_dir),
        jwk_requests,
        BASE_URL + SIGN_PATH,
        provisioner=DEFAULT_PROVISIONER,
    )
    prepared[JWK] = Prepared(
        [r.csr_pem for r in jwk_requests], jwk_tokens, [r.subject for r in jwk_requests]
    )
    places = (*KINDS, JWK)
    authority = Authority.load(ca_dir, PASSWORD)
    rates: dict[str, list[float]] = {k: [] for k in places}
    cpus: dict[str, list[float]] = {k: [] for k in places}
    certificates: dict[str, list[x509.Certificate]] = {k: [] for k in places}
    try:
        authority.set_base_urls([BASE_URL])
        jwk = authority.provisioners[DEFAULT_PROVISIONER]
        if not isinstance(jwk, JWKProvisioner):
            raise BenchmarkError("the default provisioner is not a JWK provisioner")
        before = provider.counts()
        # One untimed call of each first: the first OIDC one fetches the provider's
        # discovery document and keys; the first of all loads what is loaded lazily.
        for kind in places:
            certificates[kind].extend(_sign_all(authority, prepared[kind].slice(count)))
        fetched = {p: n - before[p] for p, n in provider.counts().items()}
        tbs_size = len(certificates[KINDS[0]][0].tbs_certificate_bytes)
        items = min(CRYPTO_ITEMS, count)
        probe = CryptoProbe(
            tokens={
                **{
                    kind: (
                        provider.public_key(ALGORITHMS[kind]),
                        [parse_compact(t) for t in prepared[kind].tokens[:items]],
                    )
                    for kind in KINDS
                },
                JWK: (jwk.public_key, [parse_compact(t) for t in jwk_tokens[:items]]),
            },
            csrs=[parse_csr(c).der for c in prepared[KINDS[0]].csrs[:items]],
            signers={
                **{kind: authority.issuers[ISSUER].signer.sign for kind in KINDS},
                JWK: authority.issuers[jwk.issuer].signer.sign,
            },
            tbs=[os.urandom(tbs_size) for _ in range(items)],
        )
        for repetition in range(params.repetitions):
            for kind in places:
                chunk = prepared[kind].slice(repetition * params.n, (repetition + 1) * params.n)
                sign = authority.signing.sign
                issued = []
                wall, cpu = time.perf_counter(), time.thread_time()
                for csr, token in zip(chunk.csrs, chunk.tokens, strict=True):
                    issued.append(sign(SignRequest(parse_csr(csr), token)))
                cpu = time.thread_time() - cpu
                wall = time.perf_counter() - wall
                rates[kind].append(len(issued) / wall)
                cpus[kind].append(cpu / len(issued) * 1e6)
                certificates[kind].extend(i.certificate for i in issued)
            probe.measure()
            progress(
                f"{NAME} in process repetition {repetition + 1}/{params.repetitions}: "
                + ", ".join(f"{k} {rates[k][-1]:.1f}/s {cpus[k][-1]:.0f} µs" for k in places)
            )
        jwk_issuer = authority.issuers[jwk.issuer].certificate
    finally:
        authority.close()
    for kind in KINDS:
        order = [*prepared[kind].emails[count:], *prepared[kind].emails[:count]]
        problems = check_certificates(certificates[kind], order, tls_ca)
        if problems:
            raise BenchmarkError(
                f"{NAME}: {len(problems)} in-process {kind} certificates failed: {problems[0]}"
            )
    for certificate in certificates[JWK]:
        try:
            certificate.verify_directly_issued_by(jwk_issuer)
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise BenchmarkError(
                f"{NAME}: a JWK certificate is not from its issuer: {exc}"
            ) from None
    reference = median(cpus[JWK])
    kinds: dict[str, Any] = {}
    for kind in places:
        cpu_us = median(cpus[kind])
        kinds[kind] = {
            **inprocess_figures(WHAT[kind], count, rates[kind], cpus[kind], probe.summary(kind)),
            "ratio_to_jwk": rounded(cpu_us / reference, 3) if reference else None,
        }
    return {
        "issuer_key_type": KeyType.P256.value,
        "jwk_issuer": jwk.issuer,
        "provider_fetches_at_warmup": fetched,
        "provider_fetches_after_warmup": {
            p: n - before[p] - fetched[p] for p, n in provider.counts().items()
        },
        "kinds": kinds,
    }


# --- through the hosts ---------------------------------------------------------------------


@dataclass
class Served:
    """A host under load: its server, its TLS CA, its prepared requests per kind."""

    host: str
    server: ServerProcess
    port: int
    context: ssl.SSLContext
    tls_ca: x509.Certificate
    prepared: dict[str, Prepared]
    warmup: Prepared
    startup_s: float
    offsets: dict[str, int] = field(default_factory=dict)
    samples: dict[str, dict[int, list[RoundSample]]] = field(default_factory=dict)
    fetches: dict[str, int] = field(default_factory=dict)

    def take(self, kind: str, count: int) -> Prepared:
        start = self.offsets.get(kind, 0)
        self.offsets[kind] = start + count
        return self.prepared[kind].slice(start, start + count)


async def _warm_up(s: Served, params: OIDCParams, provider: Provider) -> None:
    """One request, untimed: the CA fetches the provider's discovery document and keys."""
    before = provider.counts()
    replies, answered = collecting()
    async with Pool(LOOPBACK, s.port, s.context, 1) as pool:
        outcome = await drive(
            pool, SIGN_PATH, s.warmup.bodies(), params.level_timeout_s, 1, ok=answered
        )
    if outcome.errors:
        raise BenchmarkError(f"{NAME} {s.host}: the first request failed: {outcome.errors[0]}")
    problems = check_replies(replies, s.warmup.emails, s.tls_ca)
    if problems:
        raise BenchmarkError(f"{NAME} {s.host}: the first reply failed: {problems[0]}")
    s.fetches = {p: n - before[p] for p, n in provider.counts().items()}


async def _measure_hosts(
    params: OIDCParams, served: list[Served], provider: Provider, progress: Progress
) -> dict[str, int]:
    """The interleaved rounds; returns the provider's requests during them."""

    async def one_round(
        s: Served, kind: str, concurrency: int, warmup: int, count: int, label: str
    ) -> RoundSample:
        """Warm up the connections, time the rest; then read every reply (untimed)."""
        chunk = s.take(kind, warmup + count)
        replies, answered = collecting()
        async with Pool(LOOPBACK, s.port, s.context, concurrency) as pool:
            sample = await timed_level(
                pool, s.server, SIGN_PATH, chunk.bodies(), warmup, params.limits(), label,
                progress, ok=answered,
            )  # fmt: skip
        errors = sample.outcome.errors
        if errors:
            raise BenchmarkError(f"{label}: {len(errors)} requests failed: {errors[0]}")
        problems = await trio.to_thread.run_sync(check_replies, replies, chunk.emails, s.tls_ca)
        if problems:
            raise BenchmarkError(f"{label}: {len(problems)} replies failed: {problems[0]}")
        return sample

    for s in served:
        await _warm_up(s, params, provider)
        progress(f"{NAME}: {s.host}: first request answered; provider fetches {s.fetches}")
    before = provider.counts()
    await kind_rounds(params, served, KINDS, NAME, one_round)
    return {p: n - before[p] for p, n in provider.counts().items()}


def _host_summary(s: Served, params: OIDCParams, crypto: dict[str, Any]) -> dict[str, Any]:
    return {
        "server": server_figures(s.server, s.startup_s),
        "provider_fetches_at_first_request": s.fetches,
        "kinds": kind_figures(params, s.samples, KINDS, WHAT, crypto),
    }


def run_hosts(
    params: OIDCParams,
    directory: Path,
    provider: Provider,
    crypto: dict[str, Any],
    progress: Progress,
) -> dict[str, Any]:
    pinning = Pinning.choose(params.pin)
    count = params.per_kind()
    ready: list[tuple[str, Path, Path, x509.Certificate, dict[str, Prepared], Prepared]] = []
    for host in params.hosts:
        host_dir = directory / host
        host_dir.mkdir()
        ca_dir, root, tls_ca = prepare_ca(host_dir, provider)
        progress(f"{NAME}: {host}: preparing {count * len(KINDS) + 1} CSRs and ID tokens")
        prepared = {
            kind: prepare_kind(provider, kind, make_people(count, f"{host}-{kind}"))
            for kind in KINDS
        }
        warmup = prepare_kind(provider, KINDS[0], make_people(1, f"{host}-first"))
        ready.append((host, ca_dir, root, tls_ca, prepared, warmup))
    during: dict[str, int] = {}

    def measure(up: list[Started]) -> dict[str, dict[str, Any]]:
        served = [
            Served(host, u.server, u.port, u.context, tls_ca, prepared, warmup, u.startup_s)
            for (host, _, _, tls_ca, prepared, warmup), u in zip(ready, up, strict=True)
        ]
        during.update(trio.run(_measure_hosts, params, served, provider, progress))
        return {s.host: _host_summary(s, params, crypto) for s in served}

    cas = [(host, ca_dir, root) for host, ca_dir, root, _, _, _ in ready]
    results = serve_hosts(cas, directory, pinning, params, progress, NAME, measure)
    return {
        "pinning": pinning.describe(),
        "provider_fetches_during_rounds": during,
        "hosts": results,
    }


# --- the section ---------------------------------------------------------------------------


def run_oidc(params: OIDCParams, work_dir: Path, progress: Progress) -> dict[str, Any]:
    directory = work_dir / NAME
    (directory / "inprocess").mkdir(parents=True)
    progress(f"{NAME}: the provider's RSA-{RSA_BITS} and P-256 keys, served on {LOOPBACK}")
    with serving_provider() as provider:
        progress(f"{NAME}: OpenID provider at {provider.url}")
        inprocess = run_inprocess(params, directory / "inprocess", provider, progress)
        crypto = {kind: inprocess["kinds"][kind]["crypto"] for kind in KINDS}
        hosts = run_hosts(params, directory, provider, crypto, progress) if params.hosts else {}
    return {
        "parameters": {**params.describe(), "pinning": hosts.get("pinning")},
        "provisioner": PROVISIONER,
        "client_id": CLIENT_ID,
        "inprocess": inprocess,
        "provider_fetches_during_rounds": hosts.get("provider_fetches_during_rounds"),
        "hosts": hosts.get("hosts", {}),
    }


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("oidc")
    add_levels_option(
        group,
        "--oidc-concurrency",
        DEFAULT_CONCURRENCY,
        "oidc: concurrency levels through the hosts, comma-separated (default 1,8)",
    )
    add_count_option(
        group,
        "--oidc-requests",
        "oidc: timed requests per host, kind, level and round"
        " (default 100/300 for 1/8; quick 20/50)",
    )
    add_count_option(
        group, "--oidc-n", "oidc: in-process calls per kind and repetition (default 200; quick 40)"
    )
    add_hosts_option(
        group, "--oidc-host", HOSTS, "oidc: hosts to start (repeatable; default quart and raw)"
    )


def run(context: RunContext) -> dict[str, Any]:
    options = context.options
    levels = tuple(options.oidc_concurrency)
    params = OIDCParams(
        hosts=tuple(dict.fromkeys(options.oidc_host or HOSTS)),
        concurrency=levels,
        requests=tuple(requests_for(context.sizes["oidc_requests"], levels, options.oidc_requests)),
        rounds=context.size("rounds", "rounds"),
        n=context.size("oidc_n", "oidc_n"),
        repetitions=context.size("repetitions", "repetitions"),
        pin=not options.no_pin,
    )
    return run_oidc(params, context.work_dir, context.progress)
