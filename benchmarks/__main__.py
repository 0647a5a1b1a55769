"""``python -m benchmarks``: run the suite, print the tables, write JSON and markdown."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.keys import KeyType

from . import SCHEMA
from .acme import DEFAULT_HOSTS as ACME_DEFAULT_HOSTS
from .acme import AcmeParams, run_acme
from .attestation import AttestationParams, run_attestation
from .common import BenchmarkError, Progress, SectionSkipped, machine_info, rounded
from .device_attest import DeviceAttestParams
from .http import HttpParams, ScalingParams, run_http, run_scaling
from .inprocess import InprocessParams, run_breakdown, run_inprocess, run_profile
from .plot import missing as plot_missing
from .plot import write_plot
from .procs import usable_cpus
from .report import render_text, write_outputs
from .soak import SoakParams, run_soak

SECTIONS = ("inprocess", "breakdown", "http", "scaling", "attestation", "soak", "acme", "profile")
DEFAULT_SECTIONS = ("inprocess", "breakdown", "http", "scaling", "attestation", "soak", "acme")
DEFAULT_HOSTS = ("quart", "raw")
PLOT_NAME = "throughput.png"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULT_KEY_TYPES = (KeyType.P256, KeyType.P384, KeyType.ED25519, KeyType.RSA2048)
DEFAULT_CONCURRENCY = (1, 8, 32)
DEFAULT_ACME_CONCURRENCY = (1, 8)
DEFAULT_DEVICE_ATTEST_CONCURRENCY = (1, 8)

# Per-mode sizes; every one can be overridden on the command line.
MODES: dict[str, dict[str, Any]] = {
    "full": {
        "n": 500,
        "repetitions": 7,
        "warmup": 20,
        "breakdown_n": 300,
        "profile_n": 1000,
        "rounds": 3,
        "requests": {1: 200, 8: 600, 32: 800},
        "scaling_requests": 800,
        "soak": 100_000,
        "soak_every": 10_000,
        "attest": 100,
        "acme_orders": {1: 40, 8: 200},
        "device_attest": 50,
        "device_attest_validations": 200,
    },
    "quick": {
        "n": 100,
        "repetitions": 3,
        "warmup": 10,
        "breakdown_n": 100,
        "profile_n": 200,
        "rounds": 2,
        "requests": {1: 40, 8: 100, 32: 150},
        "scaling_requests": 150,
        "soak": 1_000,
        "soak_every": 250,
        "attest": 10,
        "acme_orders": {1: 8, 8: 24},
        "device_attest": 5,
        "device_attest_validations": 20,
    },
}

DESCRIPTION = """\
devid benchmarks: the certificate signing path in process, through each host, with
worker processes, for TPM attestation, and across a long soak.

Sections (all but `profile` run by default; pick with --only):
  inprocess    Authority.sign per issuer key type (P-256, P-384, Ed25519, RSA-2048),
               SQLite store at synchronous=full and at synchronous=normal, next to the
               crypto-only limit measured in the same run.
  breakdown    Authority.sign for P-256 split into its stages, timed step by step.
  http         `devid serve --host quart` and `--host raw` as subprocesses on 127.0.0.1
               (P-256 CA, default store), loaded by a trio + h11 client at concurrency
               1, 8 and 32; hosts and levels interleaved round by round; servers pinned
               to one CPU and the client to another when there are two (--no-pin).
  scaling      `devid serve --host raw --workers N` for N = 1 .. max(2, CPUs), each worker
               on a CPU of its own (the single one too), the client unpinned, at one
               concurrency level (--scaling-concurrency).
  attestation  complete AK enrolments against swtpm through a running devid serve:
               open TPM + read EK, create AK, POST /attest, ActivateCredential,
               POST /secret, check the chain; each step timed; once with an RSA EK,
               once with an ECC one (--attest-ek). Then, on one of the swtpms,
               ACME device-attest-01 through /acme/devices: complete enrolments with
               agent.enroll, and the server's validations/s alone.
  soak         N issuances (--soak; 100,000 in a full run) through the raw host with the
               server's RSS read every --soak-every issuances.
  acme         complete ACME orders (account, order, authorization, http-01 challenge
               validated for real, finalize, download) against `devid serve` (quart
               and raw hosts) and Debian's pebble (PEBBLE_VA_NOSLEEP=1), side by side:
               one client, one local http-01 responder, one mock DNS
               (pebble-challtestsrv), servers and levels interleaved round by round.
  profile      cProfile of Authority.sign (P-256, sync=full); also with --profile.
               Writes OUT/profile-STAMP.pstats and .txt.

A full run takes about 5 minutes on 2 cores (most of it the 100,000-issuance soak);
--quick about 40 seconds. Progress
goes to stderr, one line per step with the seconds since the start (on a terminal a
live line shows the requests done inside a step); -q silences it.
"""

FIGURES = """\
figures (per section; the JSON holds them all, plus min/max per repetition):
  headline ratios
                 every figure issue 6 sets a target for, with its ratio: in-process ÷
                 crypto limit, raw ÷ in-process, quart ÷ in-process, 2 workers ÷ 1
                 worker, p99 ÷ p50 at 32 connections, soak RSS growth, attestation
                 enrolments/s, ACME devid ÷ pebble. "meets" compares with the target on
                 this machine; nothing fails on it.
  inprocess
    sync=full/s, sync=normal/s
                 certificates issued per second by Authority.sign({csr, ott}) in one
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
  breakdown
    µs, share    mean µs per issuance spent in each function Authority.sign calls
                 (parse_csr, the provisioner's authorize_sign, the policy hooks,
                 prepare_certificate, the token-use and certificate store writes, the
                 certificate signature, the PEM response), measured by wrapping each
                 with a perf_counter timer; └ rows are nested calls (the SQLite commit,
                 the ES256 check, cryptography's builder). share is against the whole
                 call timed unwrapped in the same repetitions; unaccounted = whole - sum
                 of the top-level rows (a few µs negative is the timers' own cost).
  http (one row per host and concurrency level)
    issuances/s  201 responses with a certificate per second over the timed requests,
                 with at most `concurrency` requests in flight on as many keep-alive
                 connections (TLS handshakes happen in the untimed warm-up); median of
                 the rounds, which are interleaved across hosts and levels.
    p50 ms, p99 ms, p99÷p50
                 client-side latency of POST /1.0/sign (request sent to body read),
                 all rounds pooled; p99÷p50 is the tail (the issue's target: <= 4 at 32).
    server CPU ms/iss, client CPU ms/iss
                 CPU time (user + system) per issuance of the server process (from
                 /proc/PID/stat; summed over worker processes) and of this load-generator
                 process.
    server cores CPU seconds of the server per wall-clock second: near 1.0 means the
                 server is bound by one core (the GIL); server cores + client cores
                 (both in the JSON) near the CPU count means the machine, not the
                 server, is the limit.
    host÷in-process
                 host issuances/s ÷ the in-process P-256 sync=full rate of the same run:
                 what the HTTP stack, TLS, JSON and the thread hand-off cost. The
                 headline uses each host's best level.
    server peak RSS
                 VmHWM of the server process (/proc/PID/status) at the end of the run;
                 idle = VmRSS once /health first answered.
  scaling (one row per worker count)
    issuances/s, ÷ 1 worker
                 as in http, for `--workers N`; ÷ 1 worker is the scaling ratio (the
                 issue's target: 2 workers >= 1.8 x 1 worker where cores allow).
    server cores, client cores
                 CPU seconds per second of the server (all workers) and of the load
                 generator; on 2 CPUs they compete, so read them before the ratio.
    worker CPU shares
                 how the server CPU split over the worker processes (1.00 / 0.00 would
                 mean one worker took every connection).
    peak RSS     the sum of the workers' VmHWM (the supervisor's own is in the JSON).
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
  soak (one row per reading)
    RSS MiB, since start, HWM MiB
                 the server's VmRSS after the warm-up (start) and every --soak-every
                 issuances, its change since the start, and VmHWM.
    growth       end - start, end ÷ start, and the second half (middle -> end) per
                 10,000 issuances: the leak signal (stores and caches fill early).
    chunk issuances/s, store MiB
                 the rate of each chunk (new connections each) and the SQLite files'
                 size, which grows with every certificate kept.
  acme (one row per server and concurrency level)
    orders/s     complete orders per second (median round): newOrder, authorization,
                 http-01 challenge, validation (the server fetches the token from the
                 shared responder), finalize with a fresh CSR, certificate download;
                 the chain is checked. Accounts are made per connection, untimed.
    p50/p99 ms   latency of one whole order, all rounds pooled.
    server CPU ms/order, server cores
                 CPU of the devid or pebble process per order and per second (the mock
                 DNS server's CPU is in the JSON).
    client CPU ms/order
                 this process: the ACME client and the http-01 responder.
    polls/order  authorization and order POST-as-GETs until valid: the client ignores
                 Retry-After and polls every server on one schedule (at once after the
                 responder served the token, then 2, 4, 8 ... ms, at most 50 ms).
    ÷ pebble     devid's orders/s ÷ pebble's at the same concurrency; the headline
                 divides each one's best level (the issue's target: >= 2).
    step ms      mean ms per step of an order (newOrder, authorization, challenge,
                 validation, finalize, download) at the highest level.
  ~ after a rate
                 its repetitions (or rounds) spread by more than 25% of the median
                 (max - min): the machine was busy or fsync latency varied; rerun.
  machine        CPU count and model, Python, cryptography/OpenSSL, SQLite, platform,
                 git revision, and the filesystem of the temp directory (fsync cost!).

output: OUT/bench-STAMP.json (STAMP = UTC start time), OUT/latest.json (same
content), OUT/latest.md (the tables in markdown, for the README) and OUT/throughput.png
(the plot; needs matplotlib, the bench extra). The exit status is 1 if any section
failed (the others are still written); a skipped section (a tool missing) is not a
failure.

examples:
  python -m benchmarks --quick
  python -m benchmarks --only http --host raw --concurrency 1,4,16,64 --rounds 5
  python -m benchmarks --only scaling --workers 1,2,4 --scaling-concurrency 64
  python -m benchmarks --only soak --soak 100000           # about 3 minutes on 2 cores
  python -m benchmarks --only attestation --attest-n 300 --attest-ek ecc
  python -m benchmarks --only acme --acme-concurrency 1,8,32 --rounds 5
"""


def _key_type(text: str) -> KeyType:
    try:
        return KeyType.parse(text)
    except Exception as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,8,32") from None
    if not levels or any(level < 1 for level in levels):
        raise argparse.ArgumentTypeError("concurrency levels must be positive")
    return levels


def _ek_types(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not kinds or any(kind not in ("rsa", "ecc") for kind in kinds):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of rsa and ecc")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=DESCRIPTION,
        epilog=FIGURES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short run (smaller counts, fewer repetitions)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where to write the JSON and markdown (default: benchmarks/results)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        metavar="NAME",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also run the profile section (cProfile, P-256)"
    )
    parser.add_argument(
        "--key-type",
        action="append",
        type=_key_type,
        metavar="TYPE",
        help="in-process issuer key type (repeatable; default P-256, P-384, Ed25519, RSA-2048)",
    )
    parser.add_argument(
        "--client-key-type",
        type=_key_type,
        default=KeyType.P256,
        metavar="TYPE",
        help="key type of the device keys in the CSRs (default P-256, as a TPM would use)",
    )
    parser.add_argument(
        "-n",
        "--issuances",
        type=_positive,
        metavar="N",
        help="in-process issuances per repetition (default 500; quick 100)",
    )
    parser.add_argument(
        "--repetitions",
        type=_positive,
        metavar="R",
        help="in-process repetitions; the median is reported (default 7; quick 3)",
    )
    parser.add_argument(
        "--concurrency",
        type=_levels,
        default=DEFAULT_CONCURRENCY,
        metavar="LIST",
        help="http concurrency levels, comma-separated (default 1,8,32)",
    )
    parser.add_argument(
        "--requests",
        type=_positive,
        metavar="N",
        help="timed http requests per level and round"
        " (default 200/600/800 for 1/8/32; quick 40/100/150)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        metavar="N",
        help="http, scaling and acme rounds per level, interleaved across servers and"
        " levels; the median round is reported (default 3; quick 2)",
    )
    parser.add_argument(
        "--host",
        action="append",
        choices=DEFAULT_HOSTS,
        metavar="NAME",
        help="a host the http section starts, `devid serve --host NAME` (repeatable;"
        " default quart and raw)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="http, soak and acme: do not pin the servers to one CPU and the load generator"
        " to another",
    )
    parser.add_argument(
        "--workers",
        type=_levels,
        metavar="LIST",
        help="scaling: worker counts, comma-separated (default 1..max(2, usable CPUs))",
    )
    parser.add_argument(
        "--scaling-concurrency",
        type=_positive,
        default=32,
        metavar="N",
        help="scaling: connections (concurrent requests) for every worker count (default 32)",
    )
    parser.add_argument(
        "--scaling-requests",
        type=_positive,
        metavar="N",
        help="scaling: timed requests per worker count and round (default 800; quick 150)",
    )
    parser.add_argument(
        "--attest-n",
        type=_positive,
        metavar="N",
        help="attestation: timed enrolments (default 100; quick 10)",
    )
    parser.add_argument(
        "--attest-ek",
        type=_ek_types,
        default=("rsa", "ecc"),
        metavar="LIST",
        help="attestation: the swtpm EK types, each measured with its own swtpm: rsa"
        " (RSA-2048), ecc (P-384) (default rsa,ecc)",
    )
    parser.add_argument(
        "--attest-host",
        choices=DEFAULT_HOSTS,
        default="quart",
        help="attestation: the host devid serve runs (default quart, the operator's server)",
    )
    parser.add_argument(
        "--device-attest-n",
        type=_count,
        metavar="N",
        help="attestation: timed device-attest-01 enrolments through agent.enroll"
        " (default 50; quick 5; 0: no device-attest-01 figures)",
    )
    parser.add_argument(
        "--device-attest-validations",
        type=_positive,
        metavar="N",
        help="attestation: timed device-attest-01 validations per concurrency level"
        " (default 200; quick 20)",
    )
    parser.add_argument(
        "--device-attest-concurrency",
        type=_levels,
        default=DEFAULT_DEVICE_ATTEST_CONCURRENCY,
        metavar="LIST",
        help="attestation: concurrency levels of the device-attest-01 validations (default 1,8)",
    )
    parser.add_argument(
        "--acme-concurrency",
        type=_levels,
        default=DEFAULT_ACME_CONCURRENCY,
        metavar="LIST",
        help="acme: concurrency levels (connections, one order in flight each; default 1,8)",
    )
    parser.add_argument(
        "--acme-orders",
        type=_positive,
        metavar="N",
        help="acme: timed orders per server, level and round (default 40/200 for 1/8; quick 8/24)",
    )
    parser.add_argument(
        "--acme-host",
        action="append",
        choices=ACME_DEFAULT_HOSTS,
        metavar="NAME",
        help="acme: a devid host measured against pebble (repeatable; default quart and raw)",
    )
    parser.add_argument(
        "--soak",
        type=_positive,
        metavar="N",
        help="soak: issuances through the raw host (default 100000, about 3 minutes on 2"
        " cores; quick 1000)",
    )
    parser.add_argument(
        "--soak-every",
        type=_positive,
        metavar="N",
        help="soak: read the server's RSS every N issuances (default 10000; quick 250)",
    )
    parser.add_argument(
        "--soak-concurrency",
        type=_positive,
        default=8,
        metavar="N",
        help="soak: concurrent requests (default 8)",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not draw OUT/throughput.png")
    parser.add_argument(
        "--tmp",
        type=Path,
        default=None,
        metavar="DIR",
        help="parent of the temporary CA directories (default: the system temp dir);"
        " the SQLite fsync cost depends on this filesystem",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def _requests_for(mode: dict[str, Any], levels: Sequence[int], override: int | None) -> list[int]:
    return _requests_for_table(mode["requests"], levels, override)


def _requests_for_table(
    table: dict[int, int], levels: Sequence[int], override: int | None
) -> list[int]:
    """The count for each level: *override*, else the table's (its largest for other levels)."""
    if override is not None:
        return [override for _ in levels]
    return [table.get(level, max(table.values())) for level in levels]


def default_workers() -> tuple[int, ...]:
    """1 .. max(2, usable CPUs): the scaling section's worker counts."""
    return tuple(range(1, max(2, len(usable_cpus())) + 1))


def run(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Run the selected sections; return the results and the run's UTC stamp."""
    mode_name = "quick" if args.quick else "full"
    mode = MODES[mode_name]
    sections = list(args.only or DEFAULT_SECTIONS)
    if args.profile and "profile" not in sections:
        sections.append("profile")
    sections = [s for s in SECTIONS if s in sections]
    n = args.issuances or mode["n"]
    reps = args.repetitions or mode["repetitions"]
    warmup = min(mode["warmup"], n)
    rounds = args.rounds or mode["rounds"]
    progress = Progress(enabled=not args.quiet)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    inprocess_params = InprocessParams(
        key_types=tuple(args.key_type or DEFAULT_KEY_TYPES),
        n=n,
        repetitions=reps,
        warmup=warmup,
        client_key_type=args.client_key_type,
    )
    http_params = HttpParams(
        concurrency=tuple(args.concurrency),
        requests=tuple(_requests_for(mode, args.concurrency, args.requests)),
        rounds=rounds,
        hosts=tuple(dict.fromkeys(args.host or DEFAULT_HOSTS)),
        client_key_type=args.client_key_type,
        pin=not args.no_pin,
    )
    scaling_params = ScalingParams(
        concurrency=(args.scaling_concurrency,),
        requests=(args.scaling_requests or mode["scaling_requests"],),
        rounds=rounds,
        workers=tuple(args.workers or default_workers()),
        client_key_type=args.client_key_type,
    )
    soak_n = args.soak or mode["soak"]
    soak_params = SoakParams(
        issuances=soak_n,
        warmup=min(200, soak_n),
        every=args.soak_every or mode["soak_every"],
        concurrency=args.soak_concurrency,
        pin=not args.no_pin,
        client_key_type=args.client_key_type,
    )
    device_attest_n = (
        args.device_attest_n if args.device_attest_n is not None else mode["device_attest"]
    )
    attestation_params = AttestationParams(
        enrolments=args.attest_n or mode["attest"],
        ek_types=tuple(args.attest_ek),
        host=args.attest_host,
        warmup=1 if args.quick else 3,
        device_attest=(
            DeviceAttestParams(
                enrolments=device_attest_n,
                validations=args.device_attest_validations or mode["device_attest_validations"],
                concurrency=tuple(args.device_attest_concurrency),
                warmup=1 if args.quick else 2,
            )
            if device_attest_n
            else None
        ),
    )
    acme_params = AcmeParams(
        concurrency=tuple(args.acme_concurrency),
        orders=tuple(
            _requests_for_table(mode["acme_orders"], args.acme_concurrency, args.acme_orders)
        ),
        rounds=rounds,
        hosts=tuple(dict.fromkeys(args.acme_host or ACME_DEFAULT_HOSTS)),
        pin=not args.no_pin,
    )
    custom = (
        any(
            value is not None
            for value in (
                args.issuances,
                args.repetitions,
                args.requests,
                args.rounds,
                args.key_type,
                args.workers,
                args.scaling_requests,
                args.attest_n,
                args.soak,
                args.soak_every,
                args.device_attest_n,
                args.device_attest_validations,
                args.acme_orders,
            )
        )
        or tuple(args.concurrency) != DEFAULT_CONCURRENCY
        or tuple(args.acme_concurrency) != DEFAULT_ACME_CONCURRENCY
        or tuple(args.device_attest_concurrency) != DEFAULT_DEVICE_ATTEST_CONCURRENCY
    )
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": mode_name,
        "custom_sizes": custom,
        "sections": sections,
        "started_at": started.isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
    }
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    clock = time.perf_counter()
    out_dir: Path = args.out
    profile_stem = out_dir / f"profile-{stamp}"
    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
    reference: tuple[float | None, str] | None = None
    with tempfile.TemporaryDirectory(prefix="devid-bench-", dir=args.tmp) as tmp:
        work = Path(tmp)
        results["machine"] = machine_info(work)
        for index, section in enumerate(sections, 1):
            section_dir = work / section
            section_dir.mkdir()
            progress(f"section {index}/{len(sections)}: {section}")
            section_clock = time.perf_counter()
            try:
                if section == "inprocess":
                    results["inprocess"] = run_inprocess(inprocess_params, section_dir, progress)
                elif section == "breakdown":
                    results["breakdown"] = run_breakdown(
                        section_dir,
                        progress,
                        n=args.issuances or mode["breakdown_n"],
                        repetitions=reps,
                        warmup=warmup,
                    )
                elif section == "profile":
                    results["profile"] = run_profile(
                        section_dir, progress, profile_stem, n=args.issuances or mode["profile_n"]
                    )
                elif section in ("http", "scaling"):
                    if reference is None:
                        reference = _inprocess_reference(
                            results, inprocess_params, section_dir, progress
                        )
                    if section == "http":
                        results["http"] = run_http(
                            http_params,
                            section_dir,
                            progress,
                            inprocess_reference_per_s=reference[0],
                            reference_source=reference[1],
                        )
                    else:
                        results["scaling"] = run_scaling(
                            scaling_params,
                            section_dir,
                            progress,
                            inprocess_reference_per_s=reference[0],
                        )
                elif section == "attestation":
                    results["attestation"] = run_attestation(
                        attestation_params, section_dir, progress
                    )
                elif section == "soak":
                    results["soak"] = run_soak(soak_params, section_dir, progress)
                elif section == "acme":
                    results["acme"] = run_acme(acme_params, section_dir, progress)
            except SectionSkipped as exc:
                skipped[section] = str(exc)
                progress(f"{section}: not measured: {exc}")
            except Exception as exc:
                errors[section] = f"{type(exc).__name__}: {exc}"
                progress(f"{section}: FAILED: {errors[section]}")
                if not isinstance(exc, BenchmarkError):
                    traceback.print_exc(file=sys.stderr)
            progress(f"section {section} took {time.perf_counter() - section_clock:.1f} s")
    results["skipped"] = skipped
    results["errors"] = errors
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["duration_s"] = rounded(time.perf_counter() - clock, 1)
    if not args.no_plot:
        results["plot"] = _plot(results, out_dir, progress)
    progress.done()
    return results, stamp


def _plot(results: dict[str, Any], out_dir: Path, progress: Progress) -> dict[str, Any]:
    """OUT/throughput.png, or why there is none (a failure to draw is an error)."""
    reason = plot_missing()
    if reason is not None:
        progress(f"plot: skipped: {reason}")
        return {"skipped": reason}
    try:
        path = write_plot(results, out_dir / PLOT_NAME)
    except ValueError as exc:  # nothing to draw
        return {"skipped": str(exc)}
    except Exception as exc:
        results["errors"]["plot"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
        return {"skipped": results["errors"]["plot"]}
    progress(f"plot: wrote {path}")
    return {"file": path.name}


def _inprocess_reference(
    results: dict[str, Any], params: InprocessParams, work: Path, progress: Progress
) -> tuple[float | None, str]:
    """The in-process P-256 sync=full rate: from this run's inprocess section, else measured."""
    try:
        rate = results["inprocess"]["key_types"][KeyType.P256.value]["sync_full"]
        return float(rate["issuances_per_s"]), "inprocess section, same run"
    except (KeyError, TypeError):
        pass
    progress("http: measuring the in-process P-256 sync=full reference first")
    reference = InprocessParams(
        key_types=(KeyType.P256,),
        n=params.n,
        repetitions=params.repetitions,
        warmup=params.warmup,
        client_key_type=params.client_key_type,
        sync_modes=("full",),
    )
    measured = run_inprocess(reference, work / "reference", progress)
    rate = measured["key_types"][KeyType.P256.value]["sync_full"]["issuances_per_s"]
    return float(rate), "reference run (P-256, sync=full), same run"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results, stamp = run(args)
    if argv is not None:
        results["argv"] = list(argv)
    paths = write_outputs(args.out, results, stamp)
    sys.stdout.write("\n" + render_text(results))
    plot = (results.get("plot") or {}).get("file")
    sys.stdout.write(
        f"\nwrote {paths['json']}, {paths['latest_json'].name}, latest.md"
        + (f", {plot}" if plot else "")
        + "\n"
    )
    sys.stdout.flush()
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
