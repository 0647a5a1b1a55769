"""AK enrolments against swtpm: the device's side of the Attestation CA, end to end.

A swtpm is provisioned (``agent.swtpm.provision``: EK certificates from a
private local CA, the EK variant kept as in ``devid agent swtpm``), a P-256
devid CA is created that trusts that local CA (``DATA/ek-roots/swtpm.pem``),
the TPM's EK is registered with ``devid device add``, and ``devid serve``
runs as a subprocess. One enrolment through ``agent.attestation.attest``
proves the whole path works (untimed). Then each timed enrolment does what
``attest`` does, with a timer around every step:

1. ``TPM(tcti)``, ``info()``, ``endorsement_key()``: open the TPM, read the EK
   certificate from NV and recreate the EK (TPM);
2. ``create_ak()``: a new restricted signing key and its TPM2_CertifyCreation
   (TPM);
3. ``POST /attest`` on a new TLS connection (server: device and EK checks,
   credential made for the AK's Name);
4. ``ActivateCredential`` (TPM);
5. ``POST /secret`` (server: the AK certificate is issued and stored);
6. checking the returned chain (client).

Only writing the agent's state files is left out. The shares of wall time
(TPM steps, HTTP steps, the rest) come from those timers; CPU time of swtpm,
of the server and of this client process come from /proc, so the server's own
cost per enrolment is separate from the HTTP client's.

This runs once per EK type, each with a swtpm, a CA and a server of its own:
``rsa`` (RSA-2048, ``devid agent swtpm``'s default) and ``ecc`` (P-384). They
differ a lot: the agent re-creates the EK from its template twice per
enrolment (``endorsement_key`` and ``ActivateCredential``), which for RSA is a
prime search in swtpm whose cost depends on the TPM's endorsement seed, so an
RSA figure also varies from one provisioned swtpm to the next.

Then, against the same server, the server's CPU per enrolment is split: a new
TLS connection (accept, handshake, one ``GET /health``, close) against a
``GET /health`` on a kept connection gives what the one connection of an
enrolment costs the server. Once the server is stopped, the two requests' own
work (the service calls ``POST /attest`` and ``POST /secret`` make, without the
HTTP host) is timed in this process on the same data directory, the TPM's steps
untimed; what is left of the server's CPU is the HTTP host's. And the
public-key operations one enrolment needs (the TLS key exchange and server
signature, the EK certificate's signature, the AK creation signature,
MakeCredential to the EK, the AK certificate's signature) are timed alone with
`cryptography` in the same run: the crypto-only cost no code change can remove.

Everything listens on 127.0.0.1; the swtpm and the server are always stopped.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519

from engine.keys import KeyType
from hosts.testing.servers import HOSTS, run_devid

from ..common import (
    PASSWORD,
    BenchmarkError,
    Progress,
    SectionSkipped,
    create_ca,
    median,
    percentile,
    rounded,
    write_password_file,
)
from ..rounds import Meter
from ..servers import ServerProcess
from . import RunContext, device_attest, parse_positive
from .device_attest import (
    CRYPTO_REPEAT,
    DeviceAttestParams,
    KeyOperations,
    cpu_us,
    crypto_summary,
    key_name,
    run_device_attest,
    verification_work,
)

NAME = "attestation"
SIZE_OPTIONS = ("attest_n", *device_attest.SIZE_OPTIONS)

SUMMARY = """\
  attestation  complete AK enrolments against swtpm through a running devid serve:
               open TPM + read EK, create AK, POST /attest, ActivateCredential,
               POST /secret, check the chain; each step timed; once with an RSA EK,
               once with an ECC one (--attest-ek). Then, on one of the swtpms,
               ACME device-attest-01 through /acme/devices: complete enrolments with
               agent.enroll, and the server's validations/s alone.
"""
FIGURES = (
    """\
  attestation (a table per EK type, one row per step of an enrolment)
    mean/p50/p99 ms, share
                 wall time of each step, and its share of the whole enrolment; "work
                 of" says whose work the step is (tpm, server = HTTP round trip
                 including the server, client).
    enrolments/s complete enrolments per second, one at a time on one swtpm. With
                 an RSA EK most of it is swtpm re-creating the EK (a prime search whose
                 cost depends on the endorsement seed: it varies between swtpms).
    CPU ms per enrolment
                 of swtpm, of the devid server and of this (agent-side) process, from
                 /proc: how the cost splits whatever the wall-time overlap.
    server CPU split, crypto ms
                 the server's CPU per enrolment split into its one TLS connection
                 (a new connection with one GET /health, less a GET /health on a kept
                 one), the requests' own work (the service calls timed in process on
                 the same data directory) and the rest, the HTTP host's work; and the
                 public-key operations one enrolment needs, timed alone with
                 `cryptography` in the same run.
"""
    + device_attest.FIGURES
)


#: New TLS connections (and kept-connection requests) timed for the connection's share.
CONNECTIONS = 200

#: The steps of one enrolment, in order, and whose work each one is.
STEPS: tuple[tuple[str, str], ...] = (
    ("open TPM + read EK", "tpm"),
    ("create AK", "tpm"),
    ("POST /attest", "server"),
    ("ActivateCredential", "tpm"),
    ("POST /secret", "server"),
    ("check chain", "client"),
)


@dataclass(frozen=True)
class AttestationParams:
    enrolments: int = 100
    #: The EK kept in each TPM, one swtpm (and one run) per entry: "rsa" (RSA-2048, what
    #: `devid agent swtpm` makes by default) and "ecc" (P-384).
    ek_types: tuple[str, ...] = ("rsa", "ecc")
    #: The AK algorithm (an agent.tpm.KeyAlgorithm value: "ecc" for P-256, or "rsa").
    ak_algorithm: str = "ecc"
    host: str = "raw"
    warmup: int = 2
    max_duration_s: float = 120.0
    startup_timeout_s: float = 60.0
    #: New TLS connections timed to split the server's CPU per enrolment.
    connections: int = CONNECTIONS
    #: Repetitions of each public-key operation timed for the crypto-only cost.
    crypto_repeat: int = CRYPTO_REPEAT
    #: Enrolments (and validations) whose own work is timed in process.
    service_enrolments: int = 50
    #: device-attest-01 (benchmarks.sections.device_attest) after the AK enrolments, on one swtpm;
    #: None: not measured.
    device_attest: DeviceAttestParams | None = field(default_factory=DeviceAttestParams)

    def __post_init__(self) -> None:
        if not self.ek_types or any(ek not in ("rsa", "ecc") for ek in self.ek_types):
            raise ValueError("the EK types must be rsa or ecc")
        if self.enrolments < 1 or self.warmup < 0:
            raise ValueError("the number of enrolments must be positive")

    @property
    def device_attest_ek(self) -> str:
        """The swtpm the device-attest-01 figures are measured on: the ECC one if measured
        (its EK is not used by an enrolment: only the AK and a new TPM key are)."""
        return "ecc" if "ecc" in self.ek_types else self.ek_types[0]

    def describe(self) -> dict[str, Any]:
        return {
            "enrolments": self.enrolments,
            "ek_types": list(self.ek_types),
            "ak_algorithm": self.ak_algorithm,
            "host": self.host,
            "warmup": self.warmup,
            "max_duration_s": self.max_duration_s,
            "connections": "a new TLS connection per enrolment (as the agent does)",
            "connection_share": f"{self.connections} new TLS connections with one GET /health"
            " each, less as many GET /health on a kept connection",
            "crypto_repeat": self.crypto_repeat,
            "sequential": "one TPM, one enrolment at a time (a TPM executes one command at once)",
            "device_attest_ek": self.device_attest_ek if self.device_attest else None,
        }


def prerequisites() -> list[str]:
    """Why this section cannot run here (empty when it can)."""
    from agent.swtpm import missing_tools

    missing = missing_tools()
    reasons = []
    if missing:
        reasons.append(
            f"swtpm is not installed ({', '.join(missing)}): scripts/install-system-deps"
            " installs it (Debian packages swtpm, swtpm-tools)"
        )
    os.environ.setdefault("TSS2_LOG", "all+none")  # no ESYS warnings on stderr
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError as exc:
        reasons.append(f"tpm2-pytss is not importable ({exc}): pip install -e '.[test,bench]'")
    return reasons


@dataclass
class Enrolment:
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def _enrol(
    tcti: str,
    url: str,
    context: ssl.SSLContext,
    roots: list[Any],
    ak_algorithm: Any,
    ek_type: str,
) -> Enrolment:
    """One enrolment, step by step (what agent.attestation.attest does, timed)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from agent.attestation import attest_request, check_chain
    from agent.tpm import TPM, public_of
    from engine.tpm import public_key_from_tpmt

    clock = time.perf_counter
    result = Enrolment()
    seconds = result.seconds

    def post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(f"{url}{path}", json=body)
        if response.status_code >= 400:
            raise BenchmarkError(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
        data = response.json()
        if not isinstance(data, dict):
            raise BenchmarkError(f"{path}: the answer is not a JSON object")
        return data

    t = clock()
    with TPM(tcti) as tpm:
        info = tpm.info()
        ek = tpm.endorsement_key(algorithm="ecc" if ek_type == "ecc" else "rsa")
        seconds["open TPM + read EK"] = clock() - t
        t = clock()
        ak = tpm.create_ak(ak_algorithm)
        seconds["create AK"] = clock() - t
        with httpx.Client(verify=context, timeout=30.0) as client:
            t = clock()
            challenge = post(client, "/attest", attest_request(info, ek, ak.parameters))
            seconds["POST /attest"] = clock() - t
            t = clock()
            secret = tpm.activate_credential(
                ak.key,
                ek,
                base64.b64decode(challenge["credential"]),
                base64.b64decode(challenge["secret"]),
            )
            seconds["ActivateCredential"] = clock() - t
            t = clock()
            answer = post(client, "/secret", {"secret": base64.b64encode(secret).decode("ascii")})
            seconds["POST /secret"] = clock() - t
    t = clock()
    chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in answer["chain"]]
    spki = public_key_from_tpmt(public_of(ak.key)).public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    check_chain(chain, spki, roots)
    seconds["check chain"] = clock() - t
    return result


def _connection_costs(
    url: str, context: ssl.SSLContext, server: ServerProcess, count: int
) -> dict[str, Any]:
    """Server CPU (ms) of a new TLS connection with one ``GET /health`` and of one
    ``GET /health`` on a kept connection; their difference is what a connection costs."""
    health = f"{url}/health"

    def check(response: httpx.Response) -> None:
        if response.status_code != 200:
            raise BenchmarkError(f"GET /health: HTTP {response.status_code}")

    def new_connection() -> None:
        with httpx.Client(verify=context, timeout=30.0) as client:
            check(client.get(health))

    for _ in range(5):
        new_connection()
    meter = Meter(server)
    meter.start()
    for _ in range(count):
        new_connection()
    fresh = meter.stop().server_cpu_s
    with httpx.Client(verify=context, timeout=30.0) as client:
        for _ in range(5):
            check(client.get(health))
        meter = Meter(server)
        meter.start()
        for _ in range(count):
            check(client.get(health))
        kept = meter.stop().server_cpu_s
    if fresh is None or kept is None:
        raise BenchmarkError("the server's CPU time cannot be read")
    new_ms, kept_ms = fresh / count * 1e3, kept / count * 1e3
    return {
        "connections": count,
        "server_cpu_ms_per_new_connection_with_request": rounded(new_ms, 3),
        "server_cpu_ms_per_kept_request": rounded(kept_ms, 3),
        "server_cpu_ms_per_connection": rounded(max(new_ms - kept_ms, 0.0), 3),
    }


def _split(server_ms: float, connection_ms: float, service_ms: float) -> dict[str, float]:
    """The server's CPU per enrolment in three parts that add up to it: its one TLS
    connection, the requests' own work (measured in process) and the rest, the HTTP
    host's work on the two requests. Parts measured apart can overshoot the whole on a
    busy machine; each is then capped at what is left."""
    connection = min(connection_ms, server_ms)
    service = min(service_ms, server_ms - connection)
    return {
        "tls_connection": rounded(connection, 3),
        "http_host": rounded(server_ms - connection - service, 3),
        "service": rounded(service, 3),
    }


def _tls_peer(url: str, context: ssl.SSLContext) -> tuple[Any, str]:
    """The server's certificate and the TLS version it speaks."""
    from cryptography import x509

    host, port = url.split("//", 1)[1].rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=30.0) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        version = tls.version() or "?"
    if der is None:
        raise BenchmarkError("the server sent no certificate")
    return x509.load_der_x509_certificate(der), version


def _enrolment_crypto(
    tcti: str,
    ek_type: str,
    url: str,
    context: ssl.SSLContext,
    ek_roots: Path,
    chain: list[Any],
    repeat: int,
) -> dict[str, float]:
    """The public-key operations the server does for one enrolment, each timed alone (µs)."""
    from cryptography import x509

    from agent.tpm import TPM

    with TPM(tcti) as tpm:
        ek = tpm.endorsement_key(algorithm="ecc" if ek_type == "ecc" else "rsa")
    ek_public = ek.public_key
    operations: dict[str, float] = {}
    server_certificate, version = _tls_peer(url, context)
    tls_key = KeyOperations(server_certificate.public_key())
    peer = x25519.X25519PrivateKey.generate().public_key()
    operations[f"{version}: X25519 key share and shared secret"] = cpu_us(
        lambda: x25519.X25519PrivateKey.generate().exchange(peer), repeat
    )
    operations[f"{version}: server signature ({tls_key.name})"] = cpu_us(tls_key.sign, repeat)
    if ek.certificate is not None:
        certificate = x509.load_der_x509_certificate(ek.certificate.der)
        issuers = [
            c
            for c in x509.load_pem_x509_certificates(ek_roots.read_bytes())
            if c.subject == certificate.issuer
        ]
        if issuers:
            issuer = issuers[0]
            name = key_name(issuer.public_key())
            operations[f"EK certificate signature check ({name})"] = cpu_us(
                lambda: certificate.verify_directly_issued_by(issuer), repeat
            )
    ak = KeyOperations(chain[0].public_key())
    operations[f"AK creation signature check ({ak.name})"] = cpu_us(ak.verify, repeat)
    make_credential: Callable[[], object]
    if isinstance(ek_public, ec.EllipticCurvePublicKey):
        curve = ek_public.curve

        def make_credential() -> object:
            return ec.generate_private_key(curve).exchange(ec.ECDH(), ek_public)

        label = f"MakeCredential: ephemeral key and ECDH on {curve.name}"
    elif isinstance(ek_public, rsa.RSAPublicKey):
        oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"IDENTITY\0")

        def make_credential() -> object:
            return ek_public.encrypt(bytes(32), oaep)

        label = f"MakeCredential: RSA-{ek_public.key_size} OAEP encryption"
    else:
        raise BenchmarkError(f"an EK of type {type(ek_public).__name__}")
    operations[label] = cpu_us(make_credential, repeat)
    issuer_key = KeyOperations(chain[1].public_key())
    operations[f"AK certificate signature ({issuer_key.name})"] = cpu_us(issuer_key.sign, repeat)
    return operations


def _service_work(
    tcti: str, ek_type: str, data_dir: Path, ak_algorithm: Any, count: int
) -> dict[str, Any]:
    """The two requests' own work, in this process on the server's data directory (the
    server stopped): CPU per enrolment (process time) of ``POST /attest`` (the body read
    into an AttestRequest, device and EK checks, the AK's creation evidence,
    MakeCredential, the session stored, the answer) and of ``POST /secret`` (the session
    taken, the device checked again, the AK certificate signed and recorded, the
    answer). The TPM's steps are not timed; the HTTP host's work is all that is left out."""
    from agent.attestation import attest_request
    from agent.tpm import TPM
    from hosts.core.authority import Authority
    from hosts.http import wire

    authority = Authority.load(data_dir, PASSWORD)
    attest_s = secret_s = 0.0
    try:
        with TPM(tcti) as tpm:
            info = tpm.info()
            ek = tpm.endorsement_key(algorithm="ecc" if ek_type == "ecc" else "rsa")
            for index in range(count + 1):  # the first one untimed
                ak = tpm.create_ak(ak_algorithm)
                body = json.loads(json.dumps(attest_request(info, ek, ak.parameters)))
                started = time.process_time()
                challenge = authority.attestation.attest(wire.attest_request(body)).to_json()
                attest = time.process_time() - started
                secret = tpm.activate_credential(
                    ak.key,
                    ek,
                    base64.b64decode(challenge["credential"]),
                    base64.b64decode(challenge["secret"]),
                )
                answer = {"secret": base64.b64encode(secret).decode("ascii")}
                started = time.process_time()
                wire.ak_chain_json(authority.attestation.activate(wire.activation_secret(answer)))
                if index:
                    attest_s += attest
                    secret_s += time.process_time() - started
    finally:
        authority.close()
    return {
        "enrolments": count,
        "cpu_ms_per_enrolment": rounded((attest_s + secret_s) / count * 1e3, 3),
        "attest_ms": rounded(attest_s / count * 1e3, 3),
        "secret_ms": rounded(secret_s / count * 1e3, 3),
    }


def _register(data_dir: Path, urn: str) -> None:
    done = run_devid(
        "device", "add", "--data", data_dir, "--ek", urn, "--name", "bench-swtpm", check=False
    )
    if done.returncode != 0:
        raise BenchmarkError(f"devid device add failed: {done.stderr.strip()[:300]}")


def _summary(
    enrolments: list[Enrolment], elapsed: float, cpu: dict[str, float | None]
) -> dict[str, Any]:
    count = len(enrolments)
    totals = [e.total for e in enrolments]
    steps: list[dict[str, Any]] = []
    whole = sum(totals)
    share: dict[str, float] = {"tpm": 0.0, "server": 0.0, "client": 0.0}
    for name, owner in STEPS:
        values = [e.seconds[name] for e in enrolments]
        share[owner] += sum(values)
        steps.append(
            {
                "step": name,
                "work_of": owner,
                "mean_ms": rounded(sum(values) / count * 1e3),
                "p50_ms": rounded(percentile(values, 0.5) * 1e3),
                "p99_ms": rounded(percentile(values, 0.99) * 1e3),
                "share": rounded(sum(values) / whole, 3),
            }
        )
    out: dict[str, Any] = {
        "enrolments": count,
        "elapsed_s": rounded(elapsed),
        "enrolments_per_s": rounded(count / elapsed, 2),
        "latency_ms": {
            "p50": rounded(percentile(totals, 0.5) * 1e3),
            "p99": rounded(percentile(totals, 0.99) * 1e3),
            "median": rounded(median(totals) * 1e3),
        },
        "steps": steps,
        "wall_share": {k: rounded(v / whole, 3) for k, v in share.items()},
        "cpu_ms_per_enrolment": {
            k: (rounded(v / count * 1e3) if v is not None else None) for k, v in cpu.items()
        },
    }
    return out


def run_attestation(
    params: AttestationParams, work_dir: Path, progress: Progress
) -> dict[str, Any]:
    """One swtpm, CA and server per EK type, one after the other."""
    reasons = prerequisites()
    if reasons:
        raise SectionSkipped("; ".join(reasons))
    runs = {ek: _run_one(params, ek, work_dir / ek, progress) for ek in params.ek_types}
    out: dict[str, Any] = {"parameters": params.describe(), "ek_types": runs}
    device = runs[params.device_attest_ek].pop("device_attest", None)
    if device is not None:
        out["device_attest"] = {"ek_type": params.device_attest_ek, **device}
    return out


def _run_one(
    params: AttestationParams, ek_type: str, work_dir: Path, progress: Progress
) -> dict[str, Any]:
    from cryptography import x509

    from agent.attestation import attest
    from agent.swtpm import Swtpm, provision, restrict_eks, run_swtpm
    from agent.tpm import TPM, KeyAlgorithm

    ak_algorithm = KeyAlgorithm(params.ak_algorithm)
    base = work_dir
    base.mkdir(parents=True, exist_ok=True)
    name = f"attestation {ek_type} EK"
    progress(f"{name}: provisioning a swtpm with swtpm_setup")
    state, local_ca = provision(base / "tpm")
    restrict_eks(state, ek_type, local_ca)
    data_dir = base / "ca"
    init = create_ca(data_dir, KeyType.P256)
    (data_dir / "ek-roots").mkdir(exist_ok=True)
    local_ca.write_bundle(data_dir / "ek-roots" / "swtpm.pem")
    password_file = write_password_file(base / "password")
    swtpm: Swtpm | None = None
    server: ServerProcess | None = None
    try:
        swtpm = run_swtpm(state, ek_type=ek_type, ca=local_ca)
        with TPM(swtpm.tcti) as tpm:
            urn = tpm.endorsement_key().urn
        _register(data_dir, urn)
        progress(f"{name}: swtpm pid {swtpm.pid} on {swtpm.tcti}; device {urn[:32]}...")
        server = ServerProcess(data_dir, password_file, base, params.host, name="attest-server")
        url = server.wait_ready(init.root_path, params.startup_timeout_s)
        progress(f"{name}: devid serve --host {params.host} pid {server.pid} at {url}")
        with TPM(swtpm.tcti) as tpm:  # the agent's own code, once, untimed
            chain = attest(
                url, init.root_path, tpm, base / "agent-state", ak_algorithm=ak_algorithm
            )
        if len(chain) < 2:
            raise BenchmarkError("agent.attestation.attest returned no chain")
        context = ssl.create_default_context(cafile=str(init.root_path))
        roots = x509.load_pem_x509_certificates(init.root_path.read_bytes())
        for _ in range(params.warmup):
            _enrol(swtpm.tcti, url, context, roots, ak_algorithm, ek_type)
        progress(f"{name}: timing {params.enrolments} enrolments")
        enrolments: list[Enrolment] = []
        meter = Meter(server, {"swtpm": swtpm.pid})
        meter.start()
        started = time.perf_counter()
        deadline = started + params.max_duration_s
        for index in range(params.enrolments):
            if time.perf_counter() > deadline:
                progress(f"{name}: deadline of {params.max_duration_s:.0f} s reached")
                break
            enrolments.append(_enrol(swtpm.tcti, url, context, roots, ak_algorithm, ek_type))
            done = index + 1
            progress.status(f"{name}: {done}/{params.enrolments} enrolments")
            if done % max(1, params.enrolments // 4) == 0 and done < params.enrolments:
                rate = done / (time.perf_counter() - started)
                progress(f"{name}: {done}/{params.enrolments} enrolments, {rate:.1f}/s")
        usage = meter.stop()
        if not enrolments:
            raise BenchmarkError(f"{name}: no enrolment completed before the deadline")
        cpu: dict[str, float | None] = {
            "swtpm": usage.others_cpu_s["swtpm"],
            "server": usage.server_cpu_s,
            "client": usage.client_cpu_s,
        }
        result = _summary(enrolments, usage.elapsed, cpu)
        result["server_peak_rss_kib"] = server.memory().total("VmHWM")
        server_ms = result["cpu_ms_per_enrolment"]["server"]
        result["server_cpu_ms_per_enrolment"] = server_ms
        connection = _connection_costs(url, context, server, params.connections)
        result["tls_connection"] = connection
        operations = _enrolment_crypto(
            swtpm.tcti,
            ek_type,
            url,
            context,
            data_dir / "ek-roots" / "swtpm.pem",
            chain,
            params.crypto_repeat,
        )
        crypto = crypto_summary(operations, server_ms)
        result["crypto_ms_per_enrolment"] = crypto.pop("crypto_ms")
        result.update(crypto)

        progress(
            f"{name}: {result['enrolments_per_s']}/s; wall share TPM"
            f" {result['wall_share']['tpm']:.0%}, server {result['wall_share']['server']:.0%}"
        )
        measure_device = params.device_attest is not None and ek_type == params.device_attest_ek
        if params.device_attest is not None and measure_device:
            result["device_attest"] = run_device_attest(
                params.device_attest,
                swtpm.tcti,
                url,
                init.root_path,
                base / "agent-state",
                server,
                swtpm.pid,
                progress,
                f"device-attest-01 ({ek_type} EK swtpm)",
            )
        server.stop()
        progress(f"{name}: server stopped; the requests' own work in process")
        service = _service_work(
            swtpm.tcti, ek_type, data_dir, ak_algorithm, params.service_enrolments
        )
        result["service_work"] = service
        if server_ms is not None:
            result["server_cpu_split_ms"] = _split(
                float(server_ms),
                float(connection["server_cpu_ms_per_connection"]),
                float(service["cpu_ms_per_enrolment"]),
            )
        split = result.get("server_cpu_split_ms") or {}
        progress(
            f"{name}: server CPU {server_ms} ms per enrolment: its TLS connection"
            f" {split.get('tls_connection')}, the HTTP host {split.get('http_host')}, the"
            f" requests' own work {split.get('service')} (in process); its public-key"
            f" operations alone {result['crypto_ms_per_enrolment']} ms"
        )
        if measure_device and "device_attest" in result:
            device = result["device_attest"]
            work = verification_work(
                swtpm.tcti, data_dir, base / "agent-state", params.service_enrolments
            )
            device["verification_work"] = work
            validation_ms = device.get("server_cpu_ms_per_validation")
            # 0.0 is a figure too (a few validations within one CPU clock tick).
            if validation_ms is not None:
                check = min(float(work["cpu_ms_per_validation"]), float(validation_ms))
                device["server_cpu_split_ms"] = {
                    "attestation_check": rounded(check, 3),
                    "acme_request_and_http_host": rounded(float(validation_ms) - check, 3),
                }
                progress(
                    f"{name}: device-attest-01 server CPU {validation_ms} ms per validation:"
                    f" the attestation check {rounded(check, 3)} ms (in process), the ACME"
                    " request and the HTTP host the rest"
                )
    finally:
        if server is not None:
            server.stop()
        if swtpm is not None:
            swtpm.stop()
        progress(f"{name}: server and swtpm stopped")
    return {
        "ek_type": ek_type,
        "swtpm": {"pid": swtpm.pid, "ek_urn": urn},
        "server": {"pid": server.pid, "command": server.command},
        **result,
    }


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("attestation (AK enrolments, then device-attest-01)")
    group.add_argument(
        "--attest-n",
        type=parse_positive,
        metavar="N",
        help="attestation: timed enrolments (default 100; quick 10)",
    )
    group.add_argument(
        "--attest-ek",
        type=parse_ek_types,
        default=("rsa", "ecc"),
        metavar="LIST",
        help="attestation: the swtpm EK types, each measured with its own swtpm: rsa"
        " (RSA-2048), ecc (P-384) (default rsa,ecc)",
    )
    group.add_argument(
        "--attest-host",
        choices=HOSTS,
        default="raw",
        help="attestation: the host devid serve runs (default raw, the host every server-CPU"
        " target is read on; quart for the operator's server)",
    )
    device_attest.add_options(parser)


def parse_ek_types(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not kinds or any(kind not in ("rsa", "ecc") for kind in kinds):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of rsa and ecc")
    return kinds


def run(context: RunContext) -> dict[str, Any]:
    options = context.options
    params = AttestationParams(
        enrolments=context.size("attest_n", "attest"),
        ek_types=tuple(options.attest_ek),
        host=options.attest_host,
        warmup=1 if context.quick else 3,
        connections=100 if context.quick else CONNECTIONS,
        crypto_repeat=50 if context.quick else CRYPTO_REPEAT,
        service_enrolments=10 if context.quick else 50,
        device_attest=device_attest.params_for(context),
    )
    return run_attestation(params, context.work_dir, context.progress)
