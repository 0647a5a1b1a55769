"""Cloud: a virtual machine's first certificate through the GCP, AWS and Azure
provisioners (``POST /1.0/sign`` with the instance's identity as ``ott``).

Set up, untimed: the loopback metadata servers of :mod:`hosts.testing.metadata` stand
in for each cloud, in threads of this process: the GCP and Azure ones serve the JWK set
their tokens are signed with (the CA fetches it once and holds it), the AWS one only
signs (the CA reads its certificate from a file, as it reads AWS's bundled ones). A
fresh P-256 CA per part (one for the in-process part, one per host) gets three
provisioners: ``GCP`` (``bench-gce``), ``AWS`` (``bench-ec2``, the ``rsa2048`` form: a
PKCS#7 SignedData, RSA-2048, SHA-256) and ``Azure`` (``bench-azure``, with the attested
document). Every request is a different instance, with trust on first use on, as a
fleet enrols: a fresh P-256 key and CSR (common name the instance's name or ID, no
SANs: the CA gives the instance its names), and

- ``gcp``: an identity token (RS256) for ``<sign URL>#bench-gce``;
- ``aws``: the instance identity document and its ``rsa2048`` signature;
- ``azure``: a managed-identity token (RS256) and an attested document (SignedData,
  RSA-2048, its signer chained through an intermediate to a root) over the
  ``instance_nonce`` of the key and the audience.

The clouds' evidence is made before the clock starts. AWS and Azure instances send it
in an identity request (a JWS signed by the CSR's key) that lives five minutes, so
those are signed just before each repetition or round, untimed.

In process, the CSR is read (:func:`engine.csr.parse_csr`) and
``Authority.signing.sign`` called with it and the ``ott``, one call at a time (CPU =
this thread's CPU time); the kinds' repetitions interleave with the JWK provisioner's
signing in the same CA (``÷ JWK`` is each kind's CPU per request over that one). Through
each host (``devid serve --host quart`` and ``--host raw``, pinned to the first CPU,
the load generator to the second), ``POST /1.0/sign`` at each concurrency level over
keep-alive connections, rounds interleaving hosts, kinds and levels; server CPU from
/proc per request. Every reply is read afterwards (untimed): 201, a certificate issued
by the TLS CA naming the instance; one that is not fails the section.

The public-key operations a request cannot avoid are timed alone in the same run
(RSA-2048 and P-256 signature checks, the CSR's self-signature, the certificate's
signature by the TLS CA's key) and summed per kind: ``gcp`` one RSA check (the token);
``aws`` a P-256 check (the request) and an RSA check (the document); ``azure`` a P-256
check and three RSA checks (the token, the document, its signer's certificate: the
provisioner remembers the intermediate's, checked once); each also the CSR and the
certificate. ``crypto ÷ CPU`` is their share.

All traffic goes to 127.0.0.1; the servers are always stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.caclient import make_csr
from engine.csr import parse_csr
from engine.keys import KeyType
from hosts.core.authority import Authority
from hosts.core.init import DEFAULT_PROVISIONER
from hosts.service.signing import SignRequest
from hosts.testing.metadata import (
    AWSInstance,
    AWSMetadataServer,
    AzureInstance,
    AzureMetadataServer,
    GCPInstance,
    GCPMetadataServer,
)
from hosts.testing.ports import LOOPBACK
from plugins.jwk import JWKProvisioner
from plugins.minting import instance_nonce, mint_identity_request

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
from ..loadgen import Pool
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

NAME = "cloud"
HOSTS = ("quart", "raw")
#: The timed kinds: the cloud.
KINDS = ("gcp", "aws", "azure")
#: In process only: the JWK provisioner's signing, for the ÷ JWK ratio.
JWK = "jwk"
DEFAULT_CONCURRENCY = (1, 8)
SIZE_OPTIONS = ("cloud_concurrency", "cloud_requests", "cloud_n")
ISSUER = "tls"
PROVISIONERS = {"gcp": "bench-gce", "aws": "bench-ec2", "azure": "bench-azure"}
PROJECT = "bench-project"
ACCOUNT = "123456789012"
TENANT = "4f9c2a71-0d3e-4b8a-9c61-7e25d8b0f3a4"
RESOURCE = "api://devid-bench"
AWS_FORM = "rsa2048"
#: Items each crypto operation is timed over, per repetition.
CRYPTO_ITEMS = 100
WHAT = {
    "gcp": "a GCE identity token (RS256, format=full) + a CSR, one instance each",
    "aws": "an identity request: an EC2 identity document and its rsa2048 PKCS#7 signature"
    " + a CSR, one instance each",
    "azure": "an identity request: a managed-identity token (RS256) and an attested document"
    " (PKCS#7, chained to a root) + a CSR, one VM each",
    JWK: "the JWK provisioner: a devid token (ES256) + a CSR naming its subject",
}
#: The public-key operations each kind's request needs (besides the CSR and the
#: certificate): how many RSA-2048 and P-256 signature checks.
CHECKS = {
    "gcp": {"rsa_verify": 1, "p256_verify": 0},
    "aws": {"rsa_verify": 1, "p256_verify": 1},
    "azure": {"rsa_verify": 3, "p256_verify": 1},
    JWK: {"rsa_verify": 0, "p256_verify": 1},
}

SUMMARY = """\
  cloud        a virtual machine's first certificate through the GCP, AWS (rsa2048) and
               Azure (token + attested document) provisioners, one instance per request,
               from loopback metadata servers: in process (Authority.signing.sign, beside
               the JWK provisioner's) and through `devid serve --host quart` and `--host
               raw` at concurrency 1 and 8, next to the crypto-only cost.
"""
FIGURES = """\
  cloud (one row per place, kind and concurrency level)
    req/s        certificates issued (201, each read afterwards: issued by the TLS CA,
                 naming the instance) per second; in process: one call at a time, median
                 of the repetitions; through a host: median of the rounds.
    CPU µs/req   in process: this thread's CPU time per call (parse_csr +
                 Authority.signing.sign); through a host: user + system time of the
                 server process ÷ requests (load generator excluded).
    ÷ JWK        in process: CPU per request ÷ the JWK provisioner's, same CA, same run.
    crypto µs    the signature checks the kind needs (RSA-2048: gcp 1, aws 1, azure 3;
                 P-256: aws and azure 1, the identity request), the CSR's
                 self-signature and the certificate's signature, timed alone.
"""


# --- parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class CloudParams(HostKindPlan):
    requests: tuple[int, ...] = (100, 300)

    def describe(self) -> dict[str, Any]:
        return {
            "hosts": list(self.hosts),
            "issuer_key_type": KeyType.P256.value,
            "issuer": ISSUER,
            "client_key_type": KeyType.P256.value,
            "provisioners": PROVISIONERS,
            "aws_form": AWS_FORM,
            "trust_on_first_use": True,
            **self.describe_plan(),
            "inprocess_calls": self.n,
            "inprocess_repetitions": self.repetitions,
            "level_timeout_s": self.level_timeout_s,
            "protocol": "HTTP/1.1 keep-alive over TLS, one connection per concurrent request;"
            f" POST {SIGN_PATH}, application/json {{csr, ott}}",
            "store": "SQLite WAL, synchronous=full (the default config)",
        }


# --- the clouds ----------------------------------------------------------------------------


@dataclass
class Clouds:
    """The three loopback metadata servers: their keys sign every kind's evidence."""

    gcp: GCPMetadataServer
    aws: AWSMetadataServer
    azure: AzureMetadataServer

    def provisioner_tables(self, ca_dir: Path) -> str:
        """The three provisioners' tables; the files they read are written in *ca_dir*."""
        aws_file = self.aws.certificate_file(AWS_FORM, ca_dir / "bench-aws")
        roots = self.azure.roots_file(ca_dir / "bench-azure")
        intermediates = self.azure.intermediates_file(ca_dir / "bench-azure")
        return (
            f'\n[[provisioners]]\ntype = "GCP"\nname = "{PROVISIONERS["gcp"]}"\n'
            f'issuer = "{ISSUER}"\nprojects = ["{PROJECT}"]\njwks_url = "{self.gcp.jwks_url}"\n'
            f'\n[[provisioners]]\ntype = "AWS"\nname = "{PROVISIONERS["aws"]}"\n'
            f'issuer = "{ISSUER}"\naccounts = ["{ACCOUNT}"]\nforms = ["{AWS_FORM}"]\n'
            f'certificates = {{ {AWS_FORM} = "{aws_file.relative_to(ca_dir)}" }}\n'
            f'\n[[provisioners]]\ntype = "Azure"\nname = "{PROVISIONERS["azure"]}"\n'
            f'issuer = "{ISSUER}"\ntenant_id = "{TENANT}"\nresource = "{RESOURCE}"\n'
            f'jwks_url = "{self.azure.jwks_url}"\nroots = ["{roots.relative_to(ca_dir)}"]\n'
            f'intermediates = ["{intermediates.relative_to(ca_dir)}"]\n'
        )


@contextmanager
def serving_clouds() -> Iterator[Clouds]:
    """The GCP and Azure servers serve their JWK sets; the AWS one only signs."""
    with ExitStack() as stack:
        gcp = stack.enter_context(GCPMetadataServer(GCPInstance(project_id=PROJECT)))
        azure = stack.enter_context(AzureMetadataServer(AzureInstance(tenant_id=TENANT)))
        yield Clouds(gcp=gcp, aws=AWSMetadataServer(AWSInstance(account_id=ACCOUNT)), azure=azure)


# --- the instances' requests -----------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One request's instance: its name, its key and CSR, and its cloud's evidence (made
    before the clock); AWS and Azure send the evidence in an identity request signed
    when :meth:`ott` is called."""

    kind: str
    name: str
    key: ec.EllipticCurvePrivateKey
    csr_pem: str
    evidence: Any

    def ott(self, audience: str) -> str:
        if self.kind == "gcp":
            token: str = self.evidence
            return token
        return mint_identity_request(
            self.key,
            audience=audience,
            cloud=self.kind,
            evidence=self.evidence,
            now=datetime.now(UTC),
        )


def make_instances(clouds: Clouds, kind: str, count: int, audience: str) -> list[Instance]:
    """*count* instances of *kind* for the provisioner at *audience*
    (``<sign URL>#<name>``), each with its evidence."""
    out = []
    for _ in range(count):
        tag = uuid.uuid4().hex
        key = ec.generate_private_key(ec.SECP256R1())
        evidence: Any
        if kind == "gcp":
            instance_id = str(int(tag[:15], 16))
            name = f"vm-{tag[:12]}"
            gce = GCPInstance(project_id=PROJECT, instance_id=instance_id, instance_name=name)
            evidence = clouds.gcp.token(audience, instance=gce)
        elif kind == "aws":
            name = f"i-{tag[:17]}"
            document = clouds.aws.document(AWSInstance(account_id=ACCOUNT, instance_id=name))
            evidence = {AWS_FORM: clouds.aws.sign(AWS_FORM, document)}
        else:
            name = f"vm-{tag[:12]}"
            vm = AzureInstance(tenant_id=TENANT, vm_name=name, vm_id=str(uuid.UUID(tag)))
            spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            content = clouds.azure.attested_content(instance_nonce(spki, audience), instance=vm)
            evidence = {
                "access_token": clouds.azure.token(RESOURCE, instance=vm),
                "attested": clouds.azure.attested(content=content),
            }
        csr = make_csr(key, name, [])
        out.append(Instance(kind, name, key, csr.public_bytes(Encoding.PEM).decode(), evidence))
    return out


@dataclass(frozen=True)
class Prepared:
    """Requests ready to send: CSRs, ``ott`` values and the names to find in the
    certificates."""

    csrs: list[str]
    otts: list[str]
    names: list[str]

    def bodies(self) -> list[bytes]:
        return [
            json.dumps({"csr": c, "ott": t}).encode()
            for c, t in zip(self.csrs, self.otts, strict=True)
        ]


def prepare(instances: Sequence[Instance], audience: str) -> Prepared:
    """The requests of *instances*, their identity requests signed now."""
    return Prepared(
        [i.csr_pem for i in instances],
        [i.ott(audience) for i in instances],
        [i.name for i in instances],
    )


def check_certificates(
    certificates: Sequence[x509.Certificate], names: Sequence[str], tls_ca: x509.Certificate
) -> list[str]:
    """Each certificate issued by the TLS CA to one of *names* (its common name), each
    name once."""
    problems: list[str] = []
    wanted = set(names)
    seen: set[str] = set()
    if len(certificates) != len(names):
        problems.append(f"{len(certificates)} certificates for {len(names)} requests")
    for certificate in certificates:
        try:
            certificate.verify_directly_issued_by(tls_ca)
        except (InvalidSignature, ValueError, TypeError) as exc:
            problems.append(f"not issued by the TLS CA: {type(exc).__name__} {exc}")
            continue
        cns = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        name = str(cns[0].value) if cns else None
        if name not in wanted:
            problems.append(f"the certificate names no instance of the run: {name!r}")
        elif name in seen:
            problems.append(f"two certificates name {name}")
        else:
            seen.add(name)
    return problems


def check_replies(
    replies: Sequence[bytes], names: Sequence[str], tls_ca: x509.Certificate
) -> list[str]:
    """Read every ``/1.0/sign`` reply (201 bodies) as a client would, then check them."""
    certificates: list[x509.Certificate] = []
    problems: list[str] = []
    for reply in replies:
        try:
            certificates.append(x509.load_pem_x509_certificate(json.loads(reply)["crt"].encode()))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"unreadable reply: {type(exc).__name__}: {exc}")
    return problems or check_certificates(certificates, names, tls_ca)


# --- the CAs -----------------------------------------------------------------------------


def prepare_ca(directory: Path, clouds: Clouds) -> tuple[Path, Path, x509.Certificate]:
    """A fresh P-256 CA with the three cloud provisioners.

    Returns the CA directory, its root certificate file and the TLS CA's certificate."""
    ca_dir = directory / "ca"
    init = create_ca(ca_dir, KeyType.P256)
    tables = clouds.provisioner_tables(ca_dir)
    with (ca_dir / "devid.toml").open("a") as out:
        out.write(tables)
    authority = Authority.load(ca_dir, PASSWORD)
    try:
        tls_ca = authority.issuers[ISSUER].certificate
    finally:
        authority.close()
    return ca_dir, init.root_path, tls_ca


def audience(base_url: str, kind: str) -> str:
    return f"{base_url}{SIGN_PATH}#{PROVISIONERS[kind]}"


# --- the crypto-only cost ------------------------------------------------------------------


@dataclass
class CryptoProbe:
    """The public-key operations of a request, each timed alone, once per repetition."""

    csrs: list[bytes]
    sign: Callable[[bytes], bytes]
    tbs: list[bytes]
    samples: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._p256 = ec.generate_private_key(ec.SECP256R1())
        data = [os.urandom(300) for _ in range(len(self.csrs))]
        rsa_public, p256_public = self._rsa.public_key(), self._p256.public_key()
        pkcs1 = padding.PKCS1v15()
        self._rsa_items = [(d, self._rsa.sign(d, pkcs1, hashes.SHA256())) for d in data]
        self._p256_items = [(d, self._p256.sign(d, ec.ECDSA(hashes.SHA256()))) for d in data]
        self._rsa_verify = lambda item: rsa_public.verify(item[1], item[0], pkcs1, hashes.SHA256())
        self._p256_verify = lambda item: p256_public.verify(
            item[1], item[0], ec.ECDSA(hashes.SHA256())
        )

    def measure(self) -> None:
        fresh = [x509.load_der_x509_csr(der) for der in self.csrs]  # loaded untimed
        timed = {
            "rsa_verify": cpu_us_per_call(self._rsa_verify, self._rsa_items),
            "p256_verify": cpu_us_per_call(self._p256_verify, self._p256_items),
            "csr_verify": cpu_us_per_call(lambda c: c.is_signature_valid, fresh),
            "certificate_sign": cpu_us_per_call(self.sign, self.tbs),
        }
        for name, value in timed.items():
            self.samples.setdefault(name, []).append(value)

    def summary(self, kind: str) -> dict[str, Any]:
        counts = CHECKS[kind]
        parts = {
            "identity_verify": sum(n * median(self.samples[op]) for op, n in counts.items() if n),
            "csr_verify": median(self.samples["csr_verify"]),
            "certificate_sign": median(self.samples["certificate_sign"]),
        }
        return {
            **{f"{name}_us": rounded(value, 2) for name, value in parts.items()},
            "sum_us": rounded(sum(parts.values()), 2),
        }


# --- in process ----------------------------------------------------------------------------


def run_inprocess(
    params: CloudParams, directory: Path, clouds: Clouds, progress: Progress
) -> dict[str, Any]:
    """``parse_csr`` + ``Authority.signing.sign`` called directly, the kinds (and the JWK
    provisioner's signing) interleaved repetition by repetition."""
    ca_dir, _, tls_ca = prepare_ca(directory, clouds)
    count = params.n * params.repetitions
    progress(f"{NAME}: in process: preparing {count * len(KINDS) + len(KINDS)} instances")
    instances = {
        kind: make_instances(clouds, kind, count + 1, audience(BASE_URL, kind)) for kind in KINDS
    }
    jwk_requests = make_client_requests(count + 1, KeyType.P256, prefix="cloud-jwk")
    places = (*KINDS, JWK)
    authority = Authority.load(ca_dir, PASSWORD)
    rates: dict[str, list[float]] = {k: [] for k in places}
    cpus: dict[str, list[float]] = {k: [] for k in places}
    certificates: dict[str, list[x509.Certificate]] = {k: [] for k in places}
    names: dict[str, list[str]] = {k: [] for k in KINDS}
    try:
        authority.set_base_urls([BASE_URL])
        jwk = authority.provisioners[DEFAULT_PROVISIONER]
        if not isinstance(jwk, JWKProvisioner):
            raise BenchmarkError("the default provisioner is not a JWK provisioner")
        jwk_key = provisioner_key(ca_dir)

        def chunk(kind: str, start: int, stop: int) -> Prepared:
            if kind == JWK:
                requests = jwk_requests[start:stop]
                tokens = mint_tokens(
                    jwk_key, requests, BASE_URL + SIGN_PATH, provisioner=DEFAULT_PROVISIONER
                )
                return Prepared(
                    [r.csr_pem for r in requests], tokens, [r.subject for r in requests]
                )
            prepared = prepare(instances[kind][start:stop], audience(BASE_URL, kind))
            names[kind].extend(prepared.names)
            return prepared

        def sign_all(prepared: Prepared) -> list[x509.Certificate]:
            sign = authority.signing.sign
            return [
                sign(SignRequest(parse_csr(csr), ott)).certificate
                for csr, ott in zip(prepared.csrs, prepared.otts, strict=True)
            ]

        # One untimed call of each first: the GCP and Azure ones fetch their JWK sets,
        # the first of all loads what is loaded lazily.
        for kind in places:
            certificates[kind].extend(sign_all(chunk(kind, count, count + 1)))
        tbs_size = len(certificates[KINDS[0]][0].tbs_certificate_bytes)
        items = min(CRYPTO_ITEMS, count)
        probe = CryptoProbe(
            csrs=[parse_csr(i.csr_pem).der for i in instances[KINDS[0]][:items]],
            sign=authority.issuers[ISSUER].signer.sign,
            tbs=[os.urandom(tbs_size) for _ in range(items)],
        )
        for repetition in range(params.repetitions):
            start, stop = repetition * params.n, (repetition + 1) * params.n
            for kind in places:
                prepared = chunk(kind, start, stop)  # untimed: identity requests signed now
                sign = authority.signing.sign
                issued = []
                wall, cpu = time.perf_counter(), time.thread_time()
                for csr, ott in zip(prepared.csrs, prepared.otts, strict=True):
                    issued.append(sign(SignRequest(parse_csr(csr), ott)))
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
        problems = check_certificates(certificates[kind], names[kind], tls_ca)
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
    return {"issuer_key_type": KeyType.P256.value, "jwk_issuer": jwk.issuer, "kinds": kinds}


# --- through the hosts ---------------------------------------------------------------------


@dataclass
class Served:
    """A host under load: its server, its TLS CA, its instances per kind."""

    host: str
    server: ServerProcess
    port: int
    context: ssl.SSLContext
    tls_ca: x509.Certificate
    base_url: str
    instances: dict[str, list[Instance]]
    startup_s: float
    offsets: dict[str, int] = field(default_factory=dict)
    samples: dict[str, dict[int, list[RoundSample]]] = field(default_factory=dict)

    def take(self, kind: str, count: int) -> Prepared:
        """The next *count* instances of *kind*, their identity requests signed now."""
        start = self.offsets.get(kind, 0)
        self.offsets[kind] = start + count
        return prepare(self.instances[kind][start : start + count], audience(self.base_url, kind))


async def _measure_hosts(params: CloudParams, served: list[Served], progress: Progress) -> None:
    """The interleaved rounds, after one untimed request per kind and host (the CA
    fetches the GCP and Azure JWK sets)."""

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
        problems = await trio.to_thread.run_sync(check_replies, replies, chunk.names, s.tls_ca)
        if problems:
            raise BenchmarkError(f"{label}: {len(problems)} replies failed: {problems[0]}")
        return sample

    for s in served:
        for kind in KINDS:
            chunk = s.take(kind, 1)
            replies, answered = collecting()
            async with Pool(LOOPBACK, s.port, s.context, 1) as pool:
                sample = await timed_level(
                    pool, s.server, SIGN_PATH, chunk.bodies(), 0, params.limits(),
                    f"{NAME} {s.host} {kind} first", progress, ok=answered,
                )  # fmt: skip
            problems = [str(e) for e in sample.outcome.errors] or check_replies(
                replies, chunk.names, s.tls_ca
            )
            if problems:
                raise BenchmarkError(f"{NAME} {s.host}: the first {kind} request: {problems[0]}")
        progress(f"{NAME}: {s.host}: first request of each kind answered")
    await kind_rounds(params, served, KINDS, NAME, one_round)


def run_hosts(
    params: CloudParams,
    directory: Path,
    clouds: Clouds,
    crypto: dict[str, Any],
    progress: Progress,
) -> dict[str, Any]:
    pinning = Pinning.choose(params.pin)
    count = params.per_kind() + 1
    ready: list[tuple[str, Path, Path, x509.Certificate]] = []
    for host in params.hosts:
        host_dir = directory / host
        host_dir.mkdir()
        ready.append((host, *prepare_ca(host_dir, clouds)))

    def measure(up: list[Started]) -> dict[str, dict[str, Any]]:
        served = []
        for (host, _, _, tls_ca), u in zip(ready, up, strict=True):
            base_url = f"https://{LOOPBACK}:{u.port}"
            progress(f"{NAME}: {host}: preparing {count * len(KINDS)} instances")
            instances = {
                kind: make_instances(clouds, kind, count, audience(base_url, kind))
                for kind in KINDS
            }
            served.append(
                Served(host, u.server, u.port, u.context, tls_ca, base_url, instances, u.startup_s)
            )
        trio.run(_measure_hosts, params, served, progress)
        return {
            s.host: {
                "server": server_figures(s.server, s.startup_s),
                "kinds": kind_figures(params, s.samples, KINDS, WHAT, crypto),
            }
            for s in served
        }

    cas = [(host, ca_dir, root) for host, ca_dir, root, _ in ready]
    results = serve_hosts(cas, directory, pinning, params, progress, NAME, measure)
    return {"pinning": pinning.describe(), "hosts": results}


# --- the section ---------------------------------------------------------------------------


def run_cloud(params: CloudParams, work_dir: Path, progress: Progress) -> dict[str, Any]:
    directory = work_dir / NAME
    (directory / "inprocess").mkdir(parents=True)
    with serving_clouds() as clouds:
        progress(f"{NAME}: metadata servers at {clouds.gcp.url} (GCP), {clouds.azure.url} (Azure)")
        inprocess = run_inprocess(params, directory / "inprocess", clouds, progress)
        crypto = {kind: inprocess["kinds"][kind]["crypto"] for kind in KINDS}
        hosts = run_hosts(params, directory, clouds, crypto, progress) if params.hosts else {}
    return {
        "parameters": {**params.describe(), "pinning": hosts.get("pinning")},
        "inprocess": inprocess,
        "hosts": hosts.get("hosts", {}),
    }


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cloud")
    add_levels_option(
        group,
        "--cloud-concurrency",
        DEFAULT_CONCURRENCY,
        "cloud: concurrency levels through the hosts, comma-separated (default 1,8)",
    )
    add_count_option(
        group,
        "--cloud-requests",
        "cloud: timed requests per host, kind, level and round"
        " (default 100/300 for 1/8; quick 20/50)",
    )
    add_count_option(
        group,
        "--cloud-n",
        "cloud: in-process calls per kind and repetition (default 200; quick 40)",
    )
    add_hosts_option(
        group, "--cloud-host", HOSTS, "cloud: hosts to start (repeatable; default quart and raw)"
    )


def run(context: RunContext) -> dict[str, Any]:
    options = context.options
    levels = tuple(options.cloud_concurrency)
    params = CloudParams(
        hosts=tuple(dict.fromkeys(options.cloud_host or HOSTS)),
        concurrency=levels,
        requests=tuple(
            requests_for(context.sizes["cloud_requests"], levels, options.cloud_requests)
        ),
        rounds=context.size("rounds", "rounds"),
        n=context.size("cloud_n", "cloud_n"),
        repetitions=context.size("repetitions", "repetitions"),
        pin=not options.no_pin,
    )
    return run_cloud(params, context.work_dir, context.progress)
