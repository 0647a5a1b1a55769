"""SCEP (RFC 8894): PKCSReq enrolments, and the answers to CertPoll and resent requests.

Set up, untimed, per CA (one for the in-process part, one per host): a fresh CA
(issuer keys ``--scep-issuer-key-type``, RSA-2048 by default, as SCEP CAs mostly
are) with a ``SCEP`` provisioner (``bench-mdm``: a static challenge from a file,
the default ``tls`` issuer and policy), its RA key and certificate made as
GetCACert makes them, and a few transactions enrolled in process (the *seeds*)
so that CertPoll and resends have an issued transaction to answer. One client
key (RSA-2048, a self-signed signer certificate as SCEP clients use before they
hold one) makes every request; each PKCSReq has a transactionID and a CSR of its
own (``CN=scep-bench-N``, the challenge as challengePassword). Every message is
built (signed by the client key, its CSR encrypted to the RA) before the clock
starts, so the client's message building is never what limits the rate.

Three kinds of PKIOperation are timed:

- ``pkcsreq``: a new enrolment. The server verifies the request's signature,
  decrypts the content key with the RA key, reads the CSR (its self-signature
  verified), checks the challenge and the policy, signs the certificate with the
  issuer key, stores it and the transaction (SQLite, ``synchronous=full``), and
  answers a CertRep signed by the RA with the certificate encrypted to the client;
- ``certpoll``: CertPoll (IssuerAndSubject) for an issued transaction: the stored
  certificate, answered again;
- ``resend``: the same PKCSReq again (same transactionID and CSR, a new
  senderNonce), as an MDM resends when it lost the answer: the same answer.

In process, ``SCEPService.pki_operation`` is called directly, one call at a time
(CPU = this thread's CPU time, rate = calls over wall time; repetitions of the
three kinds interleave, the median is reported). Through each host (``devid
serve --host quart`` and ``--host raw``, started as the http section starts them,
pinned to the first CPU, the load generator to the second), ``POST
/scep/bench-mdm?operation=PKIOperation`` with the DER message at each
concurrency level over keep-alive connections, rounds interleaving hosts, kinds
and levels; server CPU from /proc per request. Every reply is read afterwards
(untimed) as a client reads it: signed by the RA, SUCCESS, the certificate for
the client's key; one that is not fails the section.

The crypto the operation cannot avoid is timed alone with ``cryptography`` in the
same run: the request's signature (client RSA key), the content key's RSA
decryption (RA key), the CSR's self-signature, the certificate's signature by
the issuer key, the RA's signature on the CertRep, and the content key's RSA
encryption to the client. ``crypto ÷ CPU`` is its share of the CPU per request;
the rest is CMS/ASN.1, the policy, the store and, through a host, HTTP and TLS.

All traffic goes to 127.0.0.1; the servers are always stopped.
"""

from __future__ import annotations

import argparse
import os
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, NameOID

from engine.keys import KeyType
from engine.scep import (
    MessageType,
    PKIStatus,
    Signer,
    build_pki_message,
    issuer_and_subject,
    read_cert_rep,
)
from engine.scep.types import SCEPFailure
from hosts.core.authority import Authority
from hosts.testing.keys import self_signed_certificate
from hosts.testing.ports import LOOPBACK

from ..common import (
    PASSWORD,
    BenchmarkError,
    Progress,
    cpu_us_per_call,
    create_ca,
)
from ..loadgen import Pool
from ..rounds import (
    HostKindPlan,
    RoundSample,
    Started,
    collecting,
    crypto_steps,
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
    parse_key_type,
    requests_for,
)

NAME = "scep"
HOSTS = ("quart", "raw")
KINDS = ("pkcsreq", "certpoll", "resend")
DEFAULT_CONCURRENCY = (1, 8)
SIZE_OPTIONS = ("scep_concurrency", "scep_requests", "scep_n")
PROVISIONER = "bench-mdm"
PATH = f"/scep/{PROVISIONER}?operation=PKIOperation"
PKI_MESSAGE = "application/x-pki-message"
#: Issued transactions CertPoll and resends are answered from, per CA.
SEEDS = 16
#: Items each crypto operation is timed over, per repetition.
CRYPTO_ITEMS = 100
CLIENT_KEY_BITS = 2048
#: What each kind is, for the JSON and the table.
WHAT = {
    "pkcsreq": "PKCSReq: a new enrolment (static challenge), the certificate issued and stored",
    "certpoll": "CertPoll of an issued transaction: the stored certificate answered again",
    "resend": "the same PKCSReq resent (same transactionID and CSR): the same answer",
}
#: The public-key operations of each kind, in the order the figures list them.
CRYPTO_STEPS = {
    "pkcsreq": (
        "request_verify",
        "content_key_decrypt",
        "csr_verify",
        "certificate_sign",
        "ra_sign",
        "reply_encrypt",
    ),
    "certpoll": ("request_verify", "content_key_decrypt", "ra_sign", "reply_encrypt"),
    "resend": ("request_verify", "content_key_decrypt", "csr_verify", "ra_sign", "reply_encrypt"),
}
#: The size of what the request's and the CertRep's signatures cover (DER signed
#: attributes: contentType, messageDigest, signingTime and the SCEP attributes).
SIGNED_ATTRIBUTES_BYTES = 220

SUMMARY = """\
  scep         SCEP (RFC 8894) PKIOperation: PKCSReq enrolments (static challenge),
               CertPoll of an issued transaction and a resent PKCSReq, in process
               (SCEPService.pki_operation) and through `devid serve --host quart` and
               `--host raw` at concurrency 1 and 8, next to the crypto-only cost (RSA
               key transport both ways, the issuer's and the RA's signatures).
"""
FIGURES = """\
  scep (one row per place, kind and concurrency level)
    req/s        PKIOperation requests answered (a SUCCESS CertRep, read and checked
                 afterwards) per second; in process: one call at a time, median of the
                 repetitions; through a host: median of the rounds.
    CPU µs/req   in process: this thread's CPU time per call; through a host: user +
                 system time of the server process ÷ requests (load generator excluded).
    crypto µs    the public-key operations the request needs, timed alone: request
                 signature, content-key RSA decryption (RA key), CSR signature (pkcsreq,
                 resend), certificate signature (issuer key, pkcsreq), the RA's CertRep
                 signature, content-key RSA encryption to the client. crypto÷CPU is their
                 share; rest µs = CPU - crypto (CMS, policy, store, HTTP, TLS).
"""


# --- parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class SCEPParams(HostKindPlan):
    requests: tuple[int, ...] = (60, 150)
    issuer_key_type: KeyType = KeyType.RSA2048

    def describe(self) -> dict[str, Any]:
        return {
            "hosts": list(self.hosts),
            "issuer_key_type": self.issuer_key_type.value,
            "ra_key": "RSA-2048",
            "client_key": f"RSA-{CLIENT_KEY_BITS}, one for every request",
            "challenge": "static (challenge_file)",
            "content_encryption": "AES-256-CBC, key transport RSA PKCS#1 v1.5",
            "digest": "SHA-256",
            **self.describe_plan(),
            "inprocess_calls": self.n,
            "inprocess_repetitions": self.repetitions,
            "seed_transactions": SEEDS,
            "level_timeout_s": self.level_timeout_s,
            "protocol": "HTTP/1.1 keep-alive over TLS, one connection per concurrent request;"
            f" POST {PATH}, {PKI_MESSAGE}",
            "store": "SQLite WAL, synchronous=full (the default config)",
        }


# --- the client ----------------------------------------------------------------------------


class _OSRandom:
    """Nonces and content keys from the OS (the engine's ``Random`` port)."""

    def bytes(self, n: int) -> bytes:
        return os.urandom(n)


@dataclass(frozen=True)
class Client:
    """The SCEP client: one RSA key and the self-signed certificate it signs requests with."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls) -> Client:
        key = rsa.generate_private_key(public_exponent=65537, key_size=CLIENT_KEY_BITS)
        return cls(key, self_signed_certificate(key, "scep-bench-client"))

    @property
    def signer(self) -> Signer:
        return Signer(self.certificate, self.key)

    def csr(self, common_name: str, challenge: str) -> bytes:
        """A CSR (DER) for the client's key with *challenge* as its challengePassword."""
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
            .sign(self.key, hashes.SHA256())
        )
        return csr.public_bytes(Encoding.DER)


@dataclass(frozen=True)
class Enrolment:
    """A PKCSReq's identity: its transactionID, subject and CSR."""

    transaction_id: str
    subject: str
    csr_der: bytes


@dataclass(frozen=True)
class Target:
    """What the messages to one CA need: its RA certificate, its issuer's name, its seeds."""

    ra: x509.Certificate
    issuer_name: x509.Name
    seeds: tuple[Enrolment, ...]


def make_enrolments(client: Client, count: int, challenge: str, label: str) -> list[Enrolment]:
    out = []
    for _ in range(count):
        tag = uuid.uuid4().hex
        subject = f"scep-bench-{label}-{tag[:12]}"
        out.append(Enrolment(tag, subject, client.csr(subject, challenge)))
    return out


def message(client: Client, target: Target, kind: str, enrolment: Enrolment) -> bytes:
    """One request of *kind*: *enrolment* is the new one (pkcsreq) or a seed."""
    if kind == "certpoll":
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, enrolment.subject)])
        message_type, content = (
            MessageType.CERT_POLL,
            issuer_and_subject(target.issuer_name, subject),
        )
    else:
        message_type, content = MessageType.PKCS_REQ, enrolment.csr_der
    return build_pki_message(
        message_type=message_type,
        transaction_id=enrolment.transaction_id,
        sender_nonce=os.urandom(16),
        content=content,
        recipient=target.ra,
        signer=client.signer,
        now=datetime.now(UTC),
        random=_OSRandom(),
    )


def messages(
    client: Client, target: Target, kind: str, count: int, fresh: Sequence[Enrolment]
) -> list[bytes]:
    """*count* requests of *kind*: new enrolments from *fresh*, else the seeds in turn."""
    if kind == "pkcsreq":
        if len(fresh) < count:
            raise BenchmarkError("not enough prepared enrolments")
        return [message(client, target, kind, e) for e in fresh[:count]]
    seeds = target.seeds
    return [message(client, target, kind, seeds[i % len(seeds)]) for i in range(count)]


def check_replies(client: Client, ra: x509.Certificate, replies: Sequence[bytes]) -> list[str]:
    """Read every CertRep as the client would; what was wrong with those that fail."""
    problems: list[str] = []
    public = client.key.public_key()
    for reply in replies:
        try:
            rep = read_cert_rep(reply, trusted=[ra], recipient=client.certificate, key=client.key)
        except SCEPFailure as failure:
            problems.append(f"unreadable CertRep: {failure}")
            continue
        if rep.status is not PKIStatus.SUCCESS:
            problems.append(f"CertRep {rep.status.name}: {rep.fail_text}")
        elif not rep.certificates or rep.certificates[0].public_key() != public:
            problems.append("the CertRep does not carry a certificate for the client's key")
    return problems


# --- the CAs -----------------------------------------------------------------------------


def prepare_ca(
    directory: Path, key_type: KeyType, client: Client, progress: Progress
) -> tuple[Path, Path, Target]:
    """A CA with the SCEP provisioner, its RA made, and :data:`SEEDS` issued transactions.

    Returns the CA directory, its root certificate file and the :class:`Target`."""
    ca_dir = directory / "ca"
    init = create_ca(ca_dir, key_type)
    challenge = "bench-" + os.urandom(16).hex()
    challenge_file = directory / "challenge"
    challenge_file.write_text(challenge + "\n")
    challenge_file.chmod(0o600)
    config = ca_dir / "devid.toml"
    with config.open("a") as out:
        out.write(
            f'\n[[provisioners]]\ntype = "SCEP"\nname = "{PROVISIONER}"\n'
            f'challenge_file = "{challenge_file}"\n'
        )
    authority = Authority.load(ca_dir, PASSWORD)
    try:
        service = authority.scep
        chain = service.ca_certificates(PROVISIONER)  # makes the RA key and certificate
        seeds = tuple(make_enrolments(client, SEEDS, challenge, "seed"))
        target = Target(chain[0], chain[1].subject, seeds)
        replies = [
            service.pki_operation(PROVISIONER, message(client, target, "pkcsreq", seed))
            for seed in seeds
        ]
    finally:
        authority.close()
    problems = check_replies(client, target.ra, replies)
    if problems:
        raise BenchmarkError(f"{NAME}: enrolling the seed transactions failed: {problems[0]}")
    progress(f"{NAME}: CA in {directory.name} ready ({key_type.value} issuer, {SEEDS} seeds)")
    return ca_dir, init.root_path, target


def challenge_of(directory: Path) -> str:
    return (directory / "challenge").read_text().strip()


# --- the crypto-only cost ------------------------------------------------------------------


@dataclass
class CryptoProbe:
    """The public-key operations of a SCEP request, each timed alone, once per repetition."""

    client: Client
    ra_key: rsa.RSAPrivateKey
    issuer_sign: Callable[[bytes], bytes]
    csrs: list[bytes]
    tbs_size: int
    samples: dict[str, list[float]] = field(default_factory=dict)

    def measure(self) -> None:
        pkcs1 = padding.PKCS1v15()
        sha256 = hashes.SHA256()
        client_public = self.client.key.public_key()
        ra_public = self.ra_key.public_key()
        attributes = [os.urandom(SIGNED_ATTRIBUTES_BYTES) for _ in range(CRYPTO_ITEMS)]
        signed = [(a, self.client.key.sign(a, pkcs1, sha256)) for a in attributes]
        keys = [ra_public.encrypt(os.urandom(32), pkcs1) for _ in range(CRYPTO_ITEMS)]
        fresh = [x509.load_der_x509_csr(der) for der in self.csrs]
        tbs = [os.urandom(self.tbs_size) for _ in range(CRYPTO_ITEMS)]
        timed = {
            "request_verify": cpu_us_per_call(
                lambda s: client_public.verify(s[1], s[0], pkcs1, sha256), signed
            ),
            "content_key_decrypt": cpu_us_per_call(lambda k: self.ra_key.decrypt(k, pkcs1), keys),
            "csr_verify": cpu_us_per_call(lambda c: c.is_signature_valid, fresh),
            "certificate_sign": cpu_us_per_call(self.issuer_sign, tbs),
            "ra_sign": cpu_us_per_call(lambda a: self.ra_key.sign(a, pkcs1, sha256), attributes),
            "reply_encrypt": cpu_us_per_call(
                lambda _: client_public.encrypt(os.urandom(32), pkcs1), attributes
            ),
        }
        for name, value in timed.items():
            self.samples.setdefault(name, []).append(value)

    def summary(self, kind: str) -> dict[str, Any]:
        return crypto_steps(self.samples, CRYPTO_STEPS[kind])


# --- in process ----------------------------------------------------------------------------


def run_inprocess(
    params: SCEPParams, directory: Path, client: Client, progress: Progress
) -> dict[str, Any]:
    """``SCEPService.pki_operation`` called directly, the kinds' repetitions interleaved."""
    ca_dir, _, target = prepare_ca(directory, params.issuer_key_type, client, progress)
    challenge = challenge_of(directory)
    count = params.n * params.repetitions
    progress(f"{NAME}: in process: preparing {count * len(KINDS)} messages")
    fresh = make_enrolments(client, count + 1, challenge, "inproc")
    # One untimed call of each kind first (the first call loads what is loaded lazily).
    warm = {k: messages(client, target, k, 1, fresh[-1:]) for k in KINDS}
    prepared = {k: messages(client, target, k, count, fresh[:count]) for k in KINDS}
    authority = Authority.load(ca_dir, PASSWORD)
    rates: dict[str, list[float]] = {k: [] for k in KINDS}
    cpus: dict[str, list[float]] = {k: [] for k in KINDS}
    try:
        service = authority.scep
        ra = service.ra_signer(PROVISIONER)
        if not isinstance(ra.key, rsa.RSAPrivateKey):
            raise BenchmarkError("the RA key is not an RSA key")
        issuer = authority.issuers["tls"]
        probe = CryptoProbe(
            client,
            ra.key,
            issuer.signer.sign,
            [e.csr_der for e in fresh[:CRYPTO_ITEMS]],
            len(issuer.certificate.tbs_certificate_bytes),
        )
        replies: list[bytes] = []
        for kind in KINDS:
            replies.extend(service.pki_operation(PROVISIONER, body) for body in warm[kind])
        for repetition in range(params.repetitions):
            for kind in KINDS:
                bodies = prepared[kind][repetition * params.n : (repetition + 1) * params.n]
                wall, cpu = time.perf_counter(), time.thread_time()
                for body in bodies:
                    replies.append(service.pki_operation(PROVISIONER, body))
                cpu = time.thread_time() - cpu
                wall = time.perf_counter() - wall
                rates[kind].append(len(bodies) / wall)
                cpus[kind].append(cpu / len(bodies) * 1e6)
            probe.measure()
            progress(
                f"{NAME} in process repetition {repetition + 1}/{params.repetitions}: "
                + ", ".join(f"{k} {rates[k][-1]:.1f}/s" for k in KINDS)
            )
    finally:
        authority.close()
    problems = check_replies(client, target.ra, replies)
    if problems:
        raise BenchmarkError(f"{NAME}: {len(problems)} in-process replies failed: {problems[0]}")
    kinds = {
        kind: inprocess_figures(WHAT[kind], count, rates[kind], cpus[kind], probe.summary(kind))
        for kind in KINDS
    }
    return {"issuer_key_type": params.issuer_key_type.value, "kinds": kinds}


# --- through the hosts ---------------------------------------------------------------------


@dataclass
class Served:
    """A host under load: its server, its CA's target, its prepared requests per kind."""

    host: str
    server: ServerProcess
    port: int
    context: ssl.SSLContext
    target: Target
    bodies: dict[str, list[bytes]]
    startup_s: float
    offsets: dict[str, int] = field(default_factory=dict)
    samples: dict[str, dict[int, list[RoundSample]]] = field(default_factory=dict)

    def take(self, kind: str, count: int) -> list[bytes]:
        start = self.offsets.get(kind, 0)
        self.offsets[kind] = start + count
        return self.bodies[kind][start : start + count]


async def _measure_hosts(
    params: SCEPParams, served: list[Served], client: Client, progress: Progress
) -> None:
    async def one_round(
        s: Served, kind: str, concurrency: int, warmup: int, count: int, label: str
    ) -> RoundSample:
        """Warm up the connections, time the rest; then read every reply (untimed)."""
        replies, answered = collecting(lambda status, body: status == 200 and body[:1] == b"\x30")
        async with Pool(LOOPBACK, s.port, s.context, concurrency) as pool:
            sample = await timed_level(
                pool, s.server, PATH, s.take(kind, warmup + count), warmup, params.limits(),
                label, progress, content_type=PKI_MESSAGE, ok=answered,
            )  # fmt: skip
        problems = await trio.to_thread.run_sync(check_replies, client, s.target.ra, replies)
        if problems:
            raise BenchmarkError(f"{label}: {len(problems)} replies failed: {problems[0]}")
        return sample

    await kind_rounds(params, served, KINDS, NAME, one_round)


def _host_summary(s: Served, params: SCEPParams, crypto: dict[str, Any]) -> dict[str, Any]:
    return {
        "server": server_figures(s.server, s.startup_s),
        "kinds": kind_figures(params, s.samples, KINDS, WHAT, crypto),
    }


def run_hosts(
    params: SCEPParams,
    directory: Path,
    client: Client,
    crypto: dict[str, Any],
    progress: Progress,
) -> dict[str, Any]:
    pinning = Pinning.choose(params.pin)
    count = params.per_kind()
    prepared: list[tuple[str, Path, Path, Target, dict[str, list[bytes]]]] = []
    for host in params.hosts:
        host_dir = directory / host
        host_dir.mkdir()
        ca_dir, root, target = prepare_ca(host_dir, params.issuer_key_type, client, progress)
        progress(f"{NAME}: {host}: preparing {count * len(KINDS)} messages")
        fresh = make_enrolments(client, count, challenge_of(host_dir), host)
        bodies = {k: messages(client, target, k, count, fresh) for k in KINDS}
        prepared.append((host, ca_dir, root, target, bodies))

    def measure(up: list[Started]) -> dict[str, dict[str, Any]]:
        served = [
            Served(host, u.server, u.port, u.context, target, bodies, u.startup_s)
            for (host, _, _, target, bodies), u in zip(prepared, up, strict=True)
        ]
        trio.run(_measure_hosts, params, served, client, progress)
        return {s.host: _host_summary(s, params, crypto) for s in served}

    cas = [(host, ca_dir, root) for host, ca_dir, root, _, _ in prepared]
    results = serve_hosts(cas, directory, pinning, params, progress, NAME, measure)
    return {"pinning": pinning.describe(), "hosts": results}


# --- the section ---------------------------------------------------------------------------


def run_scep(params: SCEPParams, work_dir: Path, progress: Progress) -> dict[str, Any]:
    directory = work_dir / NAME
    (directory / "inprocess").mkdir(parents=True)
    progress(f"{NAME}: the client's RSA-{CLIENT_KEY_BITS} key; CAs with the SCEP provisioner")
    client = Client.create()
    inprocess = run_inprocess(params, directory / "inprocess", client, progress)
    crypto = {kind: figures["crypto"] for kind, figures in inprocess["kinds"].items()}
    hosts = run_hosts(params, directory, client, crypto, progress) if params.hosts else {}
    return {
        "parameters": {**params.describe(), "pinning": hosts.get("pinning")},
        "provisioner": PROVISIONER,
        "inprocess": inprocess,
        "hosts": hosts.get("hosts", {}),
    }


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scep")
    add_levels_option(
        group,
        "--scep-concurrency",
        DEFAULT_CONCURRENCY,
        "scep: concurrency levels through the hosts, comma-separated (default 1,8)",
    )
    add_count_option(
        group,
        "--scep-requests",
        "scep: timed requests per host, kind, level and round"
        " (default 60/150 for 1/8; quick 20/40)",
    )
    add_count_option(
        group, "--scep-n", "scep: in-process calls per kind and repetition (default 200; quick 30)"
    )
    add_hosts_option(
        group, "--scep-host", HOSTS, "scep: hosts to start (repeatable; default quart and raw)"
    )
    group.add_argument(
        "--scep-issuer-key-type",
        type=parse_key_type,
        default=KeyType.RSA2048,
        metavar="TYPE",
        help="scep: the CA's key type, the issuer's included (default RSA-2048)",
    )


def run(context: RunContext) -> dict[str, Any]:
    options = context.options
    levels = tuple(options.scep_concurrency)
    params = SCEPParams(
        hosts=tuple(dict.fromkeys(options.scep_host or HOSTS)),
        concurrency=levels,
        requests=tuple(requests_for(context.sizes["scep_requests"], levels, options.scep_requests)),
        rounds=context.size("rounds", "rounds"),
        n=context.size("scep_n", "scep_n"),
        repetitions=context.size("repetitions", "repetitions"),
        issuer_key_type=options.scep_issuer_key_type,
        pin=not options.no_pin,
    )
    return run_scep(params, context.work_dir, context.progress)
