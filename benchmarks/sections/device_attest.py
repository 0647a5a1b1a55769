"""device-attest-01 against swtpm: enrolments through ``agent.enroll`` and validations/s.

Run by the attestation section on one of its swtpms, once the AK enrolments
are measured (the agent's state directory then holds an AK and its
certificate), against the same ``devid serve``, through its ``devices`` ACME
provisioner (``/acme/devices/directory``: device-attest-01 only, the TPM's EK
must be a registered device).

Two figures:

**enrolments/s**: complete device enrolments, one after the other, each
exactly what ``devid agent enroll`` does (``agent.enroll.enroll`` with a TPM
opened for it): a new httpx connection, directory, newAccount (the state's
account key: the server finds the existing account), newOrder for the
device's PermanentIdentifier, the authorization, a new TPM key (TPM2_Create)
certified by the AK over the key authorization (TPM2_Certify), the challenge
response (validated by the server while it answers), finalize with a CSR the
TPM key signs (TPM2_Sign), download and chain check. The TPM calls are timed
(wrapped on the TPM object), the rest is HTTP, the server and the client.

**validations/s**: only the challenge response, the server's whole
device-attest-01 verification (CBOR, the AK certificate chain, the
TPM2_Certify signature and its qualifying data, the identity the attestation
binds, the inventory): with :class:`benchmarks.acme_client.AcmeClient`, one
account per connection, every order, authorization and attestation object is
prepared first (a TPM2_Certify each, over that challenge's key authorization,
for one TPM key), then the challenge responses are timed at each concurrency
level, one in flight per connection. Each must come back ``valid``.
"""

from __future__ import annotations

import argparse
import hashlib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from hosts.testing.ports import LOOPBACK

from ..acme_client import AcmeClient, AcmeFailure
from ..common import BenchmarkError, Progress, percentile, rounded
from ..loadgen import Connection, ConnectionBroken
from ..rounds import Meter
from ..servers import ServerProcess
from . import RunContext, parse_count, parse_levels, parse_positive

DEFAULT_CONCURRENCY = (1, 8)
SIZE_OPTIONS = ("device_attest_n", "device_attest_validations", "device_attest_concurrency")

FIGURES = """\
  device-attest-01 (one table; needs swtpm)
    device enrolments/s
                 complete `agent.enroll.enroll` runs (what `devid agent enroll` does:
                 newAccount, newOrder, authorization, a new TPM key certified by the AK,
                 the challenge, finalize with a TPM-signed CSR, download), one at a time;
                 TPM ms = the TPM commands (timed on the TPM object), the rest is ACME.
    validations/s
                 device-attest-01 challenge responses the server verified as valid per
                 second, attestation objects prepared beforehand, at each concurrency
                 level (--device-attest-concurrency), one in flight per connection.

Next to them, the server's CPU per validation at concurrency 1 (no TLS handshake:
the connections are kept) and the crypto-only cost of one validation, measured in
the same run with `cryptography` alone: the public-key operations the server must
do for it (the JWS signature, the AK certificate's signature, the TPM2_Certify
signature).
"""

DEVICES_PROVISIONER = "devices"
DIRECTORY_PATH = f"/acme/{DEVICES_PROVISIONER}/directory"
#: The TPM calls an enrolment makes (the rest is HTTP, server and client work).
TPM_STEPS = ("open TPM", "create key", "certify", "sign CSR")

T = TypeVar("T")
#: Repetitions of each public-key operation timed for the crypto-only figures.
CRYPTO_REPEAT = 300
#: What one signed message is, for the crypto-only timings (a TBSCertificate, a
#: TPMS_ATTEST and a JWS signing input are a few hundred bytes).
_MESSAGE = bytes(range(256)) * 2


def cpu_us(operation: Callable[[], object], repeat: int) -> float:
    """CPU microseconds of one *operation*: process time over *repeat* runs, after one
    untimed run."""
    operation()
    started = time.process_time()
    for _ in range(repeat):
        operation()
    return (time.process_time() - started) / repeat * 1e6


def key_name(public_key: PublicKeyTypes) -> str:
    """What a key is, as the crypto-only figures name its operations."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"ECDSA {public_key.curve.name}"
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size} PKCS#1 v1.5"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(public_key).__name__


class KeyOperations:
    """Signing and verifying with a fresh key of the type and size of *public_key*: the
    cost of the public-key operation alone, whatever the key a CA or TPM holds."""

    def __init__(self, public_key: PublicKeyTypes) -> None:
        self.sign: Callable[[], bytes]
        self.verify: Callable[[], None]
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            bits = public_key.curve.key_size
            chosen: hashes.HashAlgorithm = (
                hashes.SHA256()
                if bits <= 256
                else hashes.SHA384()
                if bits <= 384
                else hashes.SHA512()
            )
            ec_key = ec.generate_private_key(public_key.curve)
            ec_signature = ec_key.sign(_MESSAGE, ec.ECDSA(chosen))
            ec_public = ec_key.public_key()
            self.sign = lambda: ec_key.sign(_MESSAGE, ec.ECDSA(chosen))
            self.verify = lambda: ec_public.verify(ec_signature, _MESSAGE, ec.ECDSA(chosen))
        elif isinstance(public_key, rsa.RSAPublicKey):
            rsa_key = rsa.generate_private_key(65537, public_key.key_size)
            pad = padding.PKCS1v15()
            rsa_signature = rsa_key.sign(_MESSAGE, pad, hashes.SHA256())
            rsa_public = rsa_key.public_key()
            self.sign = lambda: rsa_key.sign(_MESSAGE, pad, hashes.SHA256())
            self.verify = lambda: rsa_public.verify(rsa_signature, _MESSAGE, pad, hashes.SHA256())
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            edwards = (
                ed25519.Ed25519PrivateKey.generate()
                if isinstance(public_key, ed25519.Ed25519PublicKey)
                else ed448.Ed448PrivateKey.generate()
            )
            ed_signature = edwards.sign(_MESSAGE)
            ed_public = edwards.public_key()
            self.sign = lambda: edwards.sign(_MESSAGE)
            self.verify = lambda: ed_public.verify(ed_signature, _MESSAGE)
        else:
            raise BenchmarkError(f"no crypto-only timing for a {type(public_key).__name__}")
        self.name = key_name(public_key)


def crypto_summary(operations: dict[str, float], server_cpu_ms: float | None) -> dict[str, Any]:
    """The crypto-only figures: each operation (µs), their sum (ms) and its share of
    the server's CPU for the same operation."""
    total_ms = sum(operations.values()) / 1e3
    return {
        "crypto_ms": rounded(total_ms, 3),
        "crypto_ops_us": {name: rounded(us, 1) for name, us in operations.items()},
        "crypto_share_of_server_cpu": rounded(total_ms / server_cpu_ms, 3)
        if server_cpu_ms
        else None,
    }


def validation_crypto(ak_chain: Sequence[x509.Certificate], repeat: int) -> dict[str, float]:
    """The public-key operations of one device-attest-01 validation, each timed alone (µs).

    The Attestation CA certificate's own signature (by the root) is left out: the
    server checks it once per certificate pair, not per validation.
    """
    account = KeyOperations(ec.generate_private_key(ec.SECP256R1()).public_key())
    ak = KeyOperations(ak_chain[0].public_key())
    issuer = key_name(ak_chain[1].public_key())
    leaf, parent = ak_chain[0], ak_chain[1]
    return {
        f"JWS signature check ({account.name}, the ACME account key)": cpu_us(
            account.verify, repeat
        ),
        f"AK certificate signature check ({issuer}, the Attestation CA)": cpu_us(
            lambda: leaf.verify_directly_issued_by(parent), repeat
        ),
        f"TPM2_Certify signature check ({ak.name}, the AK)": cpu_us(ak.verify, repeat),
    }


@dataclass(frozen=True)
class DeviceAttestParams:
    enrolments: int = 50
    #: Challenge responses timed per concurrency level.
    validations: int = 200
    concurrency: tuple[int, ...] = (1, 8)
    warmup: int = 2
    max_duration_s: float = 120.0

    def describe(self) -> dict[str, Any]:
        return {
            "provisioner": DEVICES_PROVISIONER,
            "enrolments": self.enrolments,
            "validations_per_level": self.validations,
            "concurrency": list(self.concurrency),
            "warmup": self.warmup,
            "enrolment": "agent.enroll.enroll, one at a time, a TPM opened for each",
            "validation": "the device-attest-01 challenge POST only, attestation objects"
            " prepared first (one TPM key, a TPM2_Certify per challenge)",
        }


@dataclass
class _Timers:
    seconds: dict[str, float] = field(default_factory=dict)

    def wrap(self, name: str, function: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        return timed


def _enrol_once(
    tcti: str, directory: str, root: Path, state: Path
) -> tuple[float, dict[str, float]]:
    """One ``agent.enroll.enroll``: its wall time and the seconds of each TPM call."""
    from agent.enroll import enroll
    from agent.tpm import TPM

    timers = _Timers()
    started = time.perf_counter()
    with TPM(tcti) as tpm:
        timers.seconds["open TPM"] = time.perf_counter() - started
        # Instance attributes shadow the methods: enroll() and the TPMSigningKey it makes
        # call these, so every TPM command the enrolment sends is timed.
        tpm.create_key = timers.wrap("create key", tpm.create_key)  # type: ignore[method-assign]
        tpm.certify = timers.wrap("certify", tpm.certify)  # type: ignore[method-assign]
        tpm.sign = timers.wrap("sign CSR", tpm.sign)  # type: ignore[method-assign]
        enrollment = enroll(directory, root, tpm, state)
        if len(enrollment.chain) < 2:
            raise BenchmarkError("agent.enroll.enroll returned no chain")
    return time.perf_counter() - started, timers.seconds


def _enrolments(
    params: DeviceAttestParams,
    tcti: str,
    directory: str,
    root: Path,
    state: Path,
    server: ServerProcess,
    swtpm_pid: int,
    progress: Progress,
    name: str,
) -> dict[str, Any]:
    for _ in range(params.warmup):
        _enrol_once(tcti, directory, root, state)
    progress(f"{name}: timing {params.enrolments} device-attest-01 enrolments (agent.enroll)")
    totals: list[float] = []
    tpm_steps: list[dict[str, float]] = []
    meter = Meter(server, {"swtpm": swtpm_pid})
    meter.start()
    started = time.perf_counter()
    deadline = started + params.max_duration_s
    for index in range(params.enrolments):
        if time.perf_counter() > deadline:
            progress(f"{name}: deadline of {params.max_duration_s:.0f} s reached")
            break
        total, steps = _enrol_once(tcti, directory, root, state)
        totals.append(total)
        tpm_steps.append(steps)
        progress.status(f"{name}: {index + 1}/{params.enrolments} device enrolments")
    usage = meter.stop()
    elapsed = usage.elapsed
    count = len(totals)
    if not count:
        raise BenchmarkError(f"{name}: no device enrolment completed before the deadline")
    whole = sum(totals)
    tpm_mean = {
        step: rounded(sum(s.get(step, 0.0) for s in tpm_steps) / count * 1e3) for step in TPM_STEPS
    }
    tpm_share = sum(sum(s.values()) for s in tpm_steps) / whole

    def per(used: float | None) -> float | None:
        return rounded(used / count * 1e3) if used is not None else None

    return {
        "enrolments": count,
        "elapsed_s": rounded(elapsed),
        "enrolments_per_s": rounded(count / elapsed, 2),
        "latency_ms": {
            "p50": rounded(percentile(totals, 0.5) * 1e3),
            "p99": rounded(percentile(totals, 0.99) * 1e3),
            "mean": rounded(whole / count * 1e3),
        },
        "tpm_ms_mean": tpm_mean,
        "wall_share": {"tpm": rounded(tpm_share, 3), "acme": rounded(1 - tpm_share, 3)},
        "cpu_ms_per_enrolment": {
            "swtpm": per(usage.others_cpu_s["swtpm"]),
            "server": per(usage.server_cpu_s),
            "client": rounded(usage.client_cpu_s / count * 1e3),
        },
    }


@dataclass(frozen=True)
class _Prepared:
    client_index: int
    challenge_url: str
    payload: dict[str, Any]


async def _validations(
    params: DeviceAttestParams,
    tcti: str,
    url: str,
    context: ssl.SSLContext,
    state: Path,
    server: ServerProcess,
    progress: Progress,
    name: str,
) -> list[dict[str, Any]]:
    from agent.enroll import CHALLENGE_TYPE, IDENTIFIER_TYPE, attestation_object, device_identifier
    from agent.state import AgentState
    from agent.tpm import TPM, KeyAlgorithm, public_of
    from engine.jose import b64url_encode

    agent_state = AgentState(state)
    ak, ak_chain = agent_state.load_ak(), agent_state.load_chain()
    if ak is None or ak_chain is None:
        raise BenchmarkError(f"{name}: the agent state holds no AK and AK certificate")
    identifier = {"type": IDENTIFIER_TYPE, "value": device_identifier(ak_chain[0])}
    port = int(url.rsplit(":", 1)[1])
    levels: list[dict[str, Any]] = []
    with TPM(tcti) as tpm:
        device_key = tpm.create_key(KeyAlgorithm.ECC_P256)
        ak_public = public_of(ak)
        for concurrency in params.concurrency:
            clients: list[AcmeClient] = []
            try:
                for _ in range(concurrency):
                    connection = await Connection.open(LOOPBACK, port, context)
                    client = AcmeClient(connection, f"{url}{DIRECTORY_PATH}")
                    clients.append(client)
                    await client.start()
                    await client.new_account()
                prepare_started = time.perf_counter()
                prepared: list[_Prepared] = []
                for index in range(params.validations + concurrency):  # + one warm-up each
                    client = clients[index % concurrency]
                    _, order = await client.new_order([identifier])
                    authz = await client.get(str(order["authorizations"][0]), "authorization")
                    challenge = next(
                        (
                            c
                            for c in authz.get("challenges") or []
                            if isinstance(c, dict) and c.get("type") == CHALLENGE_TYPE
                        ),
                        None,
                    )
                    if challenge is None:
                        raise BenchmarkError(f"{name}: no {CHALLENGE_TYPE} challenge: {authz!r}")
                    key_authorization = f"{challenge['token']}.{client.thumbprint}"
                    certification = tpm.certify(
                        device_key, ak, hashlib.sha256(key_authorization.encode("ascii")).digest()
                    )
                    att_obj = attestation_object(ak_public, ak_chain, device_key, certification)
                    prepared.append(
                        _Prepared(
                            index % concurrency,
                            str(challenge["url"]),
                            {"attObj": b64url_encode(att_obj)},
                        )
                    )
                prepare_s = time.perf_counter() - prepare_started
                warm, timed = prepared[:concurrency], prepared[concurrency:]
                for item in warm:
                    answer = await clients[item.client_index].respond(
                        item.challenge_url, item.payload
                    )
                    if answer.get("status") != "valid":
                        raise BenchmarkError(f"{name}: a warm-up validation is {answer!r}"[:400])
                level = await _time_validations(
                    clients, timed, server, params, f"{name} validations c={concurrency}", progress
                )
                level["prepare_s"] = rounded(prepare_s)
                levels.append(level)
            finally:
                for client in clients:
                    await client.connection.aclose()
    return levels


async def _time_validations(
    clients: Sequence[AcmeClient],
    prepared: Sequence[_Prepared],
    server: ServerProcess,
    params: DeviceAttestParams,
    label: str,
    progress: Progress,
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []

    async def worker(index: int) -> None:
        client = clients[index]
        for item in prepared:
            if item.client_index != index or len(errors) >= 10:
                continue
            started = time.perf_counter()
            try:
                answer = await client.respond(item.challenge_url, item.payload)
            except (AcmeFailure, ConnectionBroken, OSError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if answer.get("status") == "valid":
                latencies.append(time.perf_counter() - started)
            else:
                errors.append(f"challenge {answer.get('status')!r}: {answer.get('error')!r}"[:300])
            progress.status(f"{label}: {len(latencies) + len(errors)}/{len(prepared)}")

    meter = Meter(server)
    meter.start()
    with trio.move_on_after(params.max_duration_s) as scope:
        async with trio.open_nursery() as nursery:
            for index in range(len(clients)):
                nursery.start_soon(worker, index)
    usage = meter.stop()
    elapsed = usage.elapsed
    ok = len(latencies)
    level: dict[str, Any] = {
        "concurrency": len(clients),
        "validations": len(prepared),
        "ok": ok,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "timed_out": scope.cancelled_caught,
        "elapsed_s": rounded(elapsed),
        "validations_per_s": rounded(ok / elapsed, 1) if elapsed and ok else 0.0,
    }
    if ok:
        level["latency_ms"] = {
            "p50": rounded(percentile(latencies, 0.5) * 1e3),
            "p99": rounded(percentile(latencies, 0.99) * 1e3),
        }
        server_used = usage.server_cpu_s
        if server_used is not None:
            level["server_cpu_ms_per_validation"] = rounded(server_used / ok * 1e3)
            level["server_cpu_cores"] = rounded(server_used / elapsed)
        level["client_cpu_ms_per_validation"] = rounded(usage.client_cpu_s / ok * 1e3)
    progress(
        f"{label}: {level['validations_per_s']} validations/s"
        + (f"  {len(errors)} errors, first: {errors[0]}" if errors else "")
    )
    return level


def verification_work(tcti: str, data_dir: Path, state: Path, count: int) -> dict[str, Any]:
    """The attestation check of a validation alone, in this process on the server's data
    directory (the server stopped): CPU per call (process time) of
    ``hosts.service.acme.device.verify_device_attestation`` (CBOR, the AK certificate
    path, the TPM2_Certify signature, the bound identity, the AK certificate's record
    and the inventory) over attestation objects the TPM made first. What a validation's
    server CPU holds besides it is the ACME request (JWS, nonce, the challenge and
    authorization written) and the HTTP host."""
    from datetime import UTC, datetime

    from agent.enroll import attestation_object
    from agent.state import AgentState
    from agent.tpm import TPM, KeyAlgorithm, public_of
    from hosts.core.authority import Authority
    from hosts.service.acme.device import verify_device_attestation
    from plugins.base import ACMEIssuing

    from ..common import PASSWORD

    agent_state = AgentState(state)
    ak, ak_chain = agent_state.load_ak(), agent_state.load_chain()
    if ak is None or ak_chain is None:
        raise BenchmarkError("the agent state holds no AK and AK certificate")
    objects: list[tuple[bytes, str]] = []
    with TPM(tcti) as tpm:
        device_key = tpm.create_key(KeyAlgorithm.ECC_P256)
        ak_public = public_of(ak)
        for index in range(count + 1):
            key_authorization = f"token-{index}.thumbprint"
            certification = tpm.certify(
                device_key, ak, hashlib.sha256(key_authorization.encode("ascii")).digest()
            )
            raw = attestation_object(ak_public, ak_chain, device_key, certification)
            objects.append((raw, key_authorization))
    authority = Authority.load(data_dir, PASSWORD)
    try:
        found = authority.provisioners[DEVICES_PROVISIONER]
        if not hasattr(found, "attestation_context"):
            raise BenchmarkError(f"the {DEVICES_PROVISIONER} provisioner is not an ACME one")
        provisioner = cast(ACMEIssuing, found)
        ca = authority.ca
        now = datetime.now(UTC)
        verify_device_attestation(ca, provisioner, *objects[0], now)  # untimed
        started = time.process_time()
        for raw, key_authorization in objects[1:]:
            verify_device_attestation(ca, provisioner, raw, key_authorization, now)
        used = time.process_time() - started
    finally:
        authority.close()
    return {"validations": count, "cpu_ms_per_validation": rounded(used / count * 1e3, 3)}


def run_device_attest(
    params: DeviceAttestParams,
    tcti: str,
    url: str,
    root: Path,
    state: Path,
    server: ServerProcess,
    swtpm_pid: int,
    progress: Progress,
    name: str,
) -> dict[str, Any]:
    """Both figures against a running server and swtpm (the attestation section's)."""
    directory = f"{url}{DIRECTORY_PATH}"
    result: dict[str, Any] = {"parameters": params.describe(), "directory": directory}
    result["enrolment"] = _enrolments(
        params, tcti, directory, root, state, server, swtpm_pid, progress, name
    )
    progress(
        f"{name}: {result['enrolment']['enrolments_per_s']} device enrolments/s;"
        f" preparing {params.validations} device-attest-01 challenges per level"
    )
    context = ssl.create_default_context(cafile=str(root))
    try:
        levels = trio.run(_validations, params, tcti, url, context, state, server, progress, name)
    except AcmeFailure as exc:
        raise BenchmarkError(f"{name}: {exc}") from None
    result["validation_levels"] = levels
    from agent.state import AgentState

    ak_chain = AgentState(state).load_chain()
    measured = [level for level in levels if level["ok"]]
    first = min(measured, key=lambda level: int(level["concurrency"])) if measured else None
    if ak_chain is not None and len(ak_chain) >= 2 and first is not None:
        server_ms = first.get("server_cpu_ms_per_validation")
        crypto = crypto_summary(validation_crypto(ak_chain, CRYPTO_REPEAT), server_ms)
        result["server_cpu_ms_per_validation"] = server_ms
        result["server_cpu_concurrency"] = first["concurrency"]
        result["server_cpu_note"] = (
            "no TLS handshake: the timed validations use connections opened before"
        )
        result["crypto_ms_per_validation"] = crypto.pop("crypto_ms")
        result.update(crypto)
        result["crypto_note"] = (
            "public-key operations only, each timed alone with cryptography in this run;"
            " the Attestation CA certificate's signature by the root is checked once per"
            " server, not per validation"
        )
        progress(
            f"{name}: server CPU {server_ms} ms per validation at c={first['concurrency']};"
            f" its public-key operations alone {result['crypto_ms_per_validation']} ms"
        )
    ok = [level for level in levels if level["ok"]]
    if ok:
        best = max(ok, key=lambda level: float(level["validations_per_s"]))
        result["best_validations"] = {
            "concurrency": best["concurrency"],
            "validations_per_s": best["validations_per_s"],
        }
    return result


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("device-attest-01 (part of the attestation section)")
    group.add_argument(
        "--device-attest-n",
        type=parse_count,
        metavar="N",
        help="attestation: timed device-attest-01 enrolments through agent.enroll"
        " (default 50; quick 5; 0: no device-attest-01 figures)",
    )
    group.add_argument(
        "--device-attest-validations",
        type=parse_positive,
        metavar="N",
        help="attestation: timed device-attest-01 validations per concurrency level"
        " (default 200; quick 20)",
    )
    group.add_argument(
        "--device-attest-concurrency",
        type=parse_levels,
        default=DEFAULT_CONCURRENCY,
        metavar="LIST",
        help="attestation: concurrency levels of the device-attest-01 validations (default 1,8)",
    )


def params_for(context: RunContext) -> DeviceAttestParams | None:
    """The device-attest-01 part of the attestation section; None when switched off."""
    enrolments = context.size("device_attest_n", "device_attest")
    if not enrolments:
        return None
    return DeviceAttestParams(
        enrolments=enrolments,
        validations=context.size("device_attest_validations", "device_attest_validations"),
        concurrency=tuple(context.options.device_attest_concurrency),
        warmup=1 if context.quick else 2,
    )
