"""Account certificates: what a device does for its Wi-Fi and VPN certificates.

Set up, untimed: a fresh P-256 CA served by ``devid serve --host raw`` (a
subprocess, started like the http section's servers), one device registered in
its inventory (tag ``bench``) and holding a device certificate from the Agent
CA, and a Wi-Fi account given to the ``bench`` tag. The device certificate is
issued the way the host tests give a device one: with the CA's own Agent CA key
(before the server starts, through :class:`hosts.core.authority.Authority`),
recorded as device-attest-01 records it, evidence included. The account listing
then comes from ``GET /api/v1/device/accounts`` exactly as the agent fetches it
(:func:`agent.accounts.fetch_accounts`: an x5c bearer token signed by the device
key), and the CSRs carry the names it gives.

Timed, at each concurrency level over as many keep-alive HTTPS connections
(TLS handshakes in the untimed warm-up):

- ``issuance``: the agent's request, ``POST /1.0/sign`` with a CSR for a fresh
  P-256 key and an X5C token signed by the device key (``account:NAME``,
  audience the account's, a jti of its own; minted just before its round);
- ``renewal``: ``POST /1.0/renew`` over mutual TLS with an account certificate
  (each connection presents one of its own, issued in the set-up). A connection
  renews its certificate again and again: the server does the same work for
  each renewal, and the handshake that proved the certificate is not timed.

Rounds interleave kinds and levels (round 1 of every kind and level, then round
2, ...); the median round is the rate, latencies are pooled over the rounds,
and the server's CPU (user + system from /proc, the load generator excluded) is
summed over the rounds and divided by the certificates issued. Next to it, in
the same run, the public-key operations the server cannot avoid, timed alone
with ``cryptography``: for an issuance, the token's signature, the device
certificate's signature by the Agent CA (the x5c path), the CSR's signature and
the new certificate's; for a renewal, the presented certificate's signature by
the Account CA and the new certificate's.

All traffic goes to 127.0.0.1; the server is always stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.accounts import AccountSpec, fetch_accounts
from agent.caclient import make_csr
from engine.attestation.akcert import permanent_identifier_name
from engine.extensions import ProvisionerRef
from engine.inventory import ek_urn_from_digest, permanent_identifier_value
from engine.jose import CompactJWS, parse_compact, verify_signature
from engine.keys import KeyType
from engine.pipeline import issue_own_certificate
from engine.template import CertificateTemplate
from hosts.core.authority import Authority
from hosts.testing.ports import LOOPBACK
from plugins.minting import mint_x5c_token

from ..common import (
    PASSWORD,
    BenchmarkError,
    Progress,
    cpu_us_per_call,
    create_ca,
    rounded,
    write_password_file,
)
from ..loadgen import Pool
from ..rounds import (
    KindPlan,
    RoundSample,
    crypto_steps,
    schedule,
    summarise_per_item,
    timed_level,
)
from ..servers import Pinning, ServerProcess, client_affinity
from . import (
    RunContext,
    add_count_option,
    add_levels_option,
    requests_for,
)

NAME = "accounts"
HOST = "raw"
KINDS = ("issuance", "renewal")
DEFAULT_CONCURRENCY = (1, 8)
SIZE_OPTIONS = ("accounts_concurrency", "accounts_requests")
SIGN_PATH = "/1.0/sign"
RENEW_PATH = "/1.0/renew"
DEVICE_NAME = "bench-laptop"
DEVICE_TAG = "bench"
#: The Wi-Fi account: its names rendered from the device's inventory entry.
ACCOUNT: dict[str, Any] = {
    "name": "bench-wifi",
    "type": "wifi",
    "commonName": "{device.name}",
    "sans": ["dns:{device.name}.wifi.bench.test", "{device.ek}"],
    "tags": [DEVICE_TAG],
}
#: What each kind is, for the JSON and the table.
WHAT = {
    "issuance": "POST /1.0/sign: X5C token signed by the device key + CSR",
    "renewal": "POST /1.0/renew over mTLS with the account certificate",
}
#: The public-key operations of each kind, in the order the crypto figures list them.
CRYPTO_STEPS = {
    "issuance": ("token_verify", "x5c_verify", "csr_verify", "certificate_sign"),
    "renewal": ("peer_certificate_verify", "certificate_sign"),
}
#: Items each crypto operation is timed over, per round.
CRYPTO_ITEMS = 200

SUMMARY = """\
  accounts     account certificates as a device gets them (its Wi-Fi and VPN ones) from
               `devid serve --host raw`: issuance (X5C token signed by the device key +
               CSR, POST /1.0/sign) and renewal (POST /1.0/renew over mTLS with the
               account certificate) at concurrency 1 and 8 over keep-alive connections,
               next to the crypto-only cost of the same operations.
"""
FIGURES = """\
  accounts (one row per kind and concurrency level)
    certs/s      certificates issued (201 with a certificate) per second over the timed
                 requests; median of the rounds, which interleave kinds and levels.
    p50 ms, p99 ms
                 client-side latency of one request, all rounds pooled.
    server CPU µs/cert
                 user + system time of the server process ÷ certificates (the load
                 generator excluded; TLS handshakes are in the untimed warm-up).
    crypto µs    the public-key operations the server cannot avoid, timed alone with
                 cryptography in the same run: issuance = token signature + device
                 certificate (x5c path) + CSR signature + the new certificate's
                 signature; renewal = the presented certificate's signature + the new
                 certificate's. crypto÷CPU is their share of the server CPU.
"""


# --- parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountsParams(KindPlan):
    requests: tuple[int, ...] = (150, 400)

    def describe(self) -> dict[str, Any]:
        return {
            "host": HOST,
            "issuer_key_type": KeyType.P256.value,
            "device_key_type": KeyType.P256.value,
            "account_key_type": KeyType.P256.value,
            **self.describe_plan(),
            "level_timeout_s": self.level_timeout_s,
            "protocol": "HTTP/1.1 keep-alive over TLS, one connection per concurrent request;"
            " renewals over mutual TLS, each connection with an account certificate of its own",
            "store": "SQLite WAL, synchronous=full (the default config)",
        }


# --- the device ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """The benchmark's device: its key, its certificate from the Agent CA, and that CA."""

    name: str
    ek_urn: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    agent_ca: x509.Certificate


@dataclass(frozen=True)
class CAKeys:
    """What the crypto probe needs of the CA: the Account CA's certificate and signing key."""

    account_ca: x509.Certificate
    account_key: ec.EllipticCurvePrivateKey


def prepare_ca(data_dir: Path) -> tuple[Device, CAKeys]:
    """Register the device, add the Wi-Fi account, give the device its certificate.

    Done in this process before the server starts (the CA's keys and store as the
    server will load them). The device certificate is what device-attest-01 issues:
    from the Agent CA, the device's PermanentIdentifier (its EK) as a SAN, client
    authentication, recorded with the evidence an ACME order stores.
    """
    authority = Authority.load(data_dir, PASSWORD)
    try:
        digest = os.urandom(32)
        ek_urn = ek_urn_from_digest(digest)
        authority.inventory.add({"ek": ek_urn, "name": DEVICE_NAME, "tags": [DEVICE_TAG]})
        authority.accounts.add(ACCOUNT)
        issuer = authority.issuers["agent"]
        key = ec.generate_private_key(ec.SECP256R1())
        value = permanent_identifier_value(digest)
        template = CertificateTemplate(
            subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, value)]),
            key_usage=frozenset({"digital_signature"}),
            extended_key_usage=(x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,),
            extra_general_names=(permanent_identifier_name(value),),
        )
        issued = issue_own_certificate(
            template,
            key.public_key(),
            issuer,
            ProvisionerRef(type="ACME", name="devices"),
            now=authority.clock.now(),
            lifetime=timedelta(days=30),
            random=authority.random,
            evidence={
                "method": "acme",
                "provisioner": "devices",
                "identifiers": [{"type": "permanent-identifier", "value": value}],
                "attestation": {"format": "tpm", "ek_urns": [ek_urn]},
            },
        )
        authority.record_issued(issued)
        account = authority.issuers["account"]
        account_key = account.signer.private_key
        if not isinstance(account_key, ec.EllipticCurvePrivateKey):
            raise BenchmarkError("the benchmark CA's Account CA key is not an EC key")
        device = Device(DEVICE_NAME, ek_urn, key, issued.certificate, issuer.certificate)
        return device, CAKeys(account.certificate, account_key)
    finally:
        authority.close()


@dataclass
class Issuance:
    """One issuance request: a fresh account key and its CSR (the token is minted later)."""

    key: ec.EllipticCurvePrivateKey
    csr_pem: str
    csr: x509.CertificateSigningRequest


def make_issuances(count: int, spec: AccountSpec) -> list[Issuance]:
    subject = spec.subject
    sans = list(spec.sans) or [subject]
    out = []
    for _ in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = make_csr(key, subject, sans)
        out.append(Issuance(key, csr.public_bytes(serialization.Encoding.PEM).decode(), csr))
    return out


def mint_bodies(device: Device, spec: AccountSpec, issuances: Sequence[Issuance]) -> list[bytes]:
    """``POST /1.0/sign`` bodies with tokens minted now, as the agent makes them."""
    now = datetime.now(UTC)
    subject = spec.subject
    sans = list(spec.sans) or [subject]
    return [
        json.dumps(
            {
                "csr": item.csr_pem,
                "ott": mint_x5c_token(
                    device.key,
                    [device.certificate],
                    provisioner=spec.provisioner,
                    subject=subject,
                    audience=spec.audience,
                    now=now,
                    jti=uuid.uuid4().hex,
                    sans=sans,
                ),
            }
        ).encode()
        for item in issuances
    ]


@dataclass(frozen=True)
class Held:
    """An account certificate with its key, and a TLS context that presents it."""

    certificate: x509.Certificate
    context: ssl.SSLContext


def client_context(root: Path, pem: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(root))
    context.load_cert_chain(str(pem))
    return context


async def issue_held(
    pool: Pool, issuances: Sequence[Issuance], bodies: Sequence[bytes], root: Path, out: Path
) -> list[Held]:
    """Account certificates for the renewal connections, issued one by one (untimed)."""
    held: list[Held] = []
    connection = pool.connections[0]
    for index, (item, body) in enumerate(zip(issuances, bodies, strict=True)):
        status, answer = await connection.post(SIGN_PATH, body, "application/json")
        if status != 201:
            raise BenchmarkError(
                f"issuing an account certificate failed: HTTP {status}: {answer[:300]!r}"
            )
        chain = json.loads(answer)["certChain"]
        pem = out / f"account-{index}.pem"
        key_pem = item.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pem.write_bytes("".join(chain).encode() + key_pem)
        pem.chmod(0o600)
        certificate = x509.load_pem_x509_certificate(chain[0].encode())
        held.append(Held(certificate, client_context(root, pem)))
    return held


# --- the crypto-only cost ------------------------------------------------------------------


def _verify_signed_by(issuer: x509.Certificate) -> Callable[[x509.Certificate], None]:
    public = issuer.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise BenchmarkError("the benchmark's CAs have EC keys")

    def verify(cert: x509.Certificate) -> None:
        algorithm = cert.signature_hash_algorithm
        assert algorithm is not None
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))

    return verify


def _verify_csr(csr: x509.CertificateSigningRequest) -> None:
    key = csr.public_key()
    algorithm = csr.signature_hash_algorithm
    assert isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None
    key.verify(csr.signature, csr.tbs_certrequest_bytes, ec.ECDSA(algorithm))


@dataclass
class CryptoProbe:
    """The public-key operations of each kind, each timed alone, once per round."""

    device: Device
    keys: CAKeys
    tokens: list[CompactJWS]
    csrs: list[x509.CertificateSigningRequest]
    held: list[x509.Certificate]
    tbs_size: int
    samples: dict[str, list[float]] = field(default_factory=dict)

    def _token(self, jws: CompactJWS) -> None:
        public = self.device.key.public_key()  # the device certificate's key
        verify_signature(jws.alg, public, jws.signing_input, jws.signature)

    def measure(self) -> None:
        signer = self.keys.account_key
        messages = [os.urandom(self.tbs_size) for _ in range(CRYPTO_ITEMS)]
        devices = [self.device.certificate] * CRYPTO_ITEMS
        peers = [self.held[i % len(self.held)] for i in range(CRYPTO_ITEMS)]
        fresh = [
            x509.load_pem_x509_csr(c.public_bytes(serialization.Encoding.PEM)) for c in self.csrs
        ]
        timed = {
            "token_verify": cpu_us_per_call(self._token, self.tokens),
            "x5c_verify": cpu_us_per_call(_verify_signed_by(self.device.agent_ca), devices),
            "csr_verify": cpu_us_per_call(_verify_csr, fresh),
            "peer_certificate_verify": cpu_us_per_call(
                _verify_signed_by(self.keys.account_ca), peers
            ),
            "certificate_sign": cpu_us_per_call(
                lambda m: signer.sign(m, ec.ECDSA(hashes.SHA256())), messages
            ),
        }
        for name, value in timed.items():
            self.samples.setdefault(name, []).append(value)

    def summary(self, kind: str) -> dict[str, Any]:
        return {**crypto_steps(self.samples, CRYPTO_STEPS[kind]), "tbs_bytes": self.tbs_size}


# --- rounds -------------------------------------------------------------------------------


async def _level(
    server: ServerProcess,
    pool: Pool,
    path: str,
    bodies: Sequence[bytes],
    warmup: int,
    params: AccountsParams,
    label: str,
    progress: Progress,
) -> RoundSample:
    async with pool:
        return await timed_level(
            pool, server, path, bodies, warmup, params.limits(), label, progress
        )


def _kind_summary(
    kind: str, levels: list[dict[str, Any]], crypto: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {"what": WHAT[kind], "crypto": crypto, "levels": levels}
    measured = [lv for lv in levels if lv["ok"] and "server_cpu_us_per_certificate" in lv]
    if measured:
        best = max(measured, key=lambda lv: float(lv["certificates_per_s"]))
        cpu = float(best["server_cpu_us_per_certificate"])
        out.update(
            {
                "concurrency": best["concurrency"],
                "certificates_per_s": best["certificates_per_s"],
                "server_cpu_us_per_certificate": best["server_cpu_us_per_certificate"],
                "crypto_us_per_certificate": crypto["sum_us"],
                "crypto_share_of_server_cpu": rounded(float(crypto["sum_us"]) / cpu, 3)
                if cpu
                else None,
                "non_crypto_us_per_certificate": rounded(cpu - float(crypto["sum_us"]), 1),
            }
        )
    return out


async def _measure(
    params: AccountsParams,
    server: ServerProcess,
    url: str,
    root: Path,
    device: Device,
    keys: CAKeys,
    work_dir: Path,
    progress: Progress,
) -> dict[str, Any]:
    port = int(url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(root))
    specs = await trio.to_thread.run_sync(
        lambda: fetch_accounts(url, root, device.key, [device.certificate], datetime.now(UTC))
    )
    spec = next((s for s in specs if s.name == ACCOUNT["name"]), None)
    if spec is None:
        raise BenchmarkError(f"the device's account listing has no {ACCOUNT['name']!r}")
    connections = max(params.concurrency)
    progress(f"{NAME}: preparing {params.per_kind()} account keys and CSRs")
    issuances = make_issuances(params.per_kind() + connections, spec)
    setup, issuances = issuances[:connections], issuances[connections:]
    async with Pool(LOOPBACK, port, context, 1) as pool:
        held = await issue_held(pool, setup, mint_bodies(device, spec, setup), root, work_dir)
    probed = issuances[:CRYPTO_ITEMS]
    tokens = [parse_compact(json.loads(b)["ott"]) for b in mint_bodies(device, spec, probed)]
    probe = CryptoProbe(
        device,
        keys,
        tokens,
        [item.csr for item in probed],
        [h.certificate for h in held],
        len(held[0].certificate.tbs_certificate_bytes),
    )
    samples: dict[str, dict[int, list[RoundSample]]] = {
        k: {c: [] for c in params.concurrency} for k in KINDS
    }
    offset = 0
    plan = params.plan()
    for round_number, kind, (concurrency, count) in schedule(params.rounds, KINDS, plan):
        label = f"{NAME} {kind} c={concurrency} round {round_number}/{params.rounds}"
        warmup = params.warmup_for(concurrency)
        if kind == "issuance":
            chunk = issuances[offset : offset + warmup + count]
            offset += len(chunk)
            bodies = mint_bodies(device, spec, chunk)
            pool = Pool(LOOPBACK, port, context, concurrency)
            path = SIGN_PATH
        else:
            bodies = [b""] * (warmup + count)
            pool = Pool(
                LOOPBACK,
                port,
                context,
                concurrency,
                client_contexts=[h.context for h in held[:concurrency]],
            )
            path = RENEW_PATH
        sample = await _level(server, pool, path, bodies, warmup, params, label, progress)
        samples[kind][concurrency].append(sample)
        if kind == KINDS[-1] and concurrency == params.concurrency[-1]:
            probe.measure()  # once per round, between the loads
    kinds = {
        kind: _kind_summary(
            kind,
            [
                summarise_per_item(c, r, samples[kind][c], "certificate", client_cores=False)
                for c, r in plan
            ],
            probe.summary(kind),
        )
        for kind in KINDS
    }
    return {
        "device": {
            "name": device.name,
            "ek": device.ek_urn,
            "certificate_serial": format(device.certificate.serial_number, "x"),
            "how": "issued from the Agent CA with the CA's own key before the server"
            " started, recorded as device-attest-01 records it (as the host tests do)",
        },
        "account": {
            "name": spec.name,
            "provisioner": spec.provisioner,
            "common_name": spec.common_name,
            "sans": list(spec.sans),
            "audience": spec.audience,
        },
        "renewal_certificates": len(held),
        "kinds": kinds,
    }


def run_accounts(params: AccountsParams, work_dir: Path, progress: Progress) -> dict[str, Any]:
    pinning = Pinning.choose(params.pin)
    directory = work_dir / NAME
    progress(f"{NAME}: creating a P-256 CA, its device and Wi-Fi account")
    init = create_ca(directory / "ca", KeyType.P256)
    password = write_password_file(directory / "password")
    device, keys = prepare_ca(directory / "ca")
    started = time.perf_counter()
    server = ServerProcess(
        directory / "ca", password, directory, HOST, cpus=pinning.server, name="server"
    )
    status: Any = None
    startup_s: float | None = None
    try:
        url = server.wait_ready(init.root_path, params.startup_timeout_s)
        startup_s = time.perf_counter() - started
        progress(f"{NAME}: devid serve --host {HOST} pid {server.pid} ready at {url}")
        with client_affinity(pinning.client):
            figures = trio.run(
                _measure, params, server, url, init.root_path, device, keys, directory, progress
            )
        peak = server.memory()
    finally:
        try:
            status = server.stop()
        except Exception as exc:
            status = f"{type(exc).__name__}: {exc}"
        progress(f"{NAME}: server stopped (exit status {status})")
    return {
        "parameters": {**params.describe(), "pinning": pinning.describe()},
        "server": {
            "command": server.command,
            "pid": server.pid,
            "startup_s": rounded(startup_s) if startup_s is not None else None,
            "peak_rss_kib": peak.total("VmHWM"),
            "exit_status": status,
        },
        **figures,
    }


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("accounts")
    add_levels_option(
        group,
        "--accounts-concurrency",
        DEFAULT_CONCURRENCY,
        "accounts concurrency levels, comma-separated (default 1,8)",
    )
    add_count_option(
        group,
        "--accounts-requests",
        "timed accounts requests per kind, level and round (default 150/400 for 1/8; quick 30/80)",
    )


def run(context: RunContext) -> dict[str, Any]:
    options = context.options
    levels = tuple(options.accounts_concurrency)
    params = AccountsParams(
        concurrency=levels,
        requests=tuple(
            requests_for(context.sizes["accounts_requests"], levels, options.accounts_requests)
        ),
        rounds=context.size("rounds", "rounds"),
        pin=not options.no_pin,
    )
    return run_accounts(params, context.work_dir, context.progress)
