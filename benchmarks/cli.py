"""``python -m benchmarks``: parse the options, run the sections, print and write the results.

The sections themselves (what each measures, its options and its part of
``--help``) are in :mod:`benchmarks.sections`; the tables and files in
:mod:`benchmarks.report`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.keys import KeyType
from hosts.testing.processes import ProcessError

from . import SCHEMA, servers
from .common import BenchmarkError, Progress, SectionSkipped, machine_info, rounded
from .report import render_text, write_outputs
from .report.plot import missing as plot_missing
from .report.plot import write_plot
from .sections import (
    DEFAULT_SECTIONS,
    SECTIONS,
    RunContext,
    accounts,
    acme,
    attestation,
    breakdown,
    cloud,
    fleet,
    http,
    inprocess,
    oidc,
    parse_key_type,
    parse_positive,
    profile,
    scaling,
    scep,
    soak,
)

#: Each section's module, by name, in the order they run.
MODULES: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        inprocess,
        breakdown,
        http,
        accounts,
        scep,
        oidc,
        cloud,
        scaling,
        attestation,
        soak,
        acme,
        fleet,
        profile,
    )
}
assert tuple(MODULES) == SECTIONS
PLOT_NAME = "throughput.png"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"

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
        "accounts_requests": {1: 150, 8: 400},
        "scep_requests": {1: 60, 8: 150},
        "scep_n": 200,
        "oidc_requests": {1: 100, 8: 300},
        "oidc_n": 200,
        "cloud_requests": {1: 100, 8: 300},
        "cloud_n": 200,
        "scaling_requests": 800,
        "soak": 100_000,
        "soak_every": 10_000,
        "attest": 100,
        "acme_orders": {1: 40, 8: 200},
        "device_attest": 50,
        "device_attest_validations": 200,
        "fleet": 10_000,
    },
    "quick": {
        "n": 100,
        "repetitions": 3,
        "warmup": 10,
        "breakdown_n": 100,
        "profile_n": 200,
        "rounds": 2,
        "requests": {1: 40, 8: 100, 32: 150},
        "accounts_requests": {1: 30, 8: 80},
        "scep_requests": {1: 20, 8: 40},
        "scep_n": 30,
        "oidc_requests": {1: 20, 8: 50},
        "oidc_n": 40,
        "cloud_requests": {1: 20, 8: 50},
        "cloud_n": 40,
        "scaling_requests": 150,
        "soak": 1_000,
        "soak_every": 250,
        "attest": 10,
        "acme_orders": {1: 8, 8: 24},
        "device_attest": 5,
        "device_attest_validations": 20,
        "fleet": 1_000,
    },
}

DESCRIPTION = (
    """\
devid benchmarks: the certificate signing path in process, through each host, with
worker processes, for TPM attestation, and across a long soak.

Sections (all but `profile` run by default; pick with --only):
"""
    + "".join(module.SUMMARY for module in MODULES.values())
    + """
A full run takes 10 to 20 minutes on 2 cores (the 10,000-device fleet alone 6 to 13,
the 100,000-issuance soak about 2); --quick about 2 minutes. Progress
goes to stderr, one line per step with the seconds since the start (on a terminal a
live line shows the requests done inside a step); -q silences it.
"""
)

FIGURES = (
    """\
figures (per section; the JSON holds them all, plus min/max per repetition):
  headline ratios
                 every figure issue 6 sets a target for, with its ratio: in-process ÷
                 crypto limit, raw ÷ in-process, quart ÷ in-process, 2 workers ÷ 1
                 worker, p99 ÷ p50 at 32 connections, soak RSS growth, attestation
                 enrolments/s, ACME devid ÷ pebble. "meets" compares with the target on
                 this machine; nothing fails on it.
"""
    + "".join(getattr(module, "FIGURES", "") for module in MODULES.values())
    + """\
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
  python -m benchmarks --only fleet --fleet 2000 --fleet-concurrency 16
"""
)


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
        "--flame",
        action="store_true",
        help="sample every devid serve the run starts with py-spy, from ready to stop, and"
        " write its flame graph as OUT/flame/SECTION-NAME-PID.svg (the profile section adds one of"
        " sign_body in process); needs py-spy (the bench extra)",
    )
    parser.add_argument(
        "--client-key-type",
        type=parse_key_type,
        default=KeyType.P256,
        metavar="TYPE",
        help="key type of the device keys in the CSRs (default P-256, as a TPM would use)",
    )
    parser.add_argument(
        "--rounds",
        type=parse_positive,
        metavar="N",
        help="http, accounts, scaling and acme rounds per level, interleaved across servers and"
        " levels; the median round is reported (default 3; quick 2)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="http, accounts, soak and acme: do not pin the servers to one CPU and the load"
        " generator to another",
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
    for module in MODULES.values():
        module.add_options(parser)
    return parser


def custom_sizes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Whether an option changed how much a section measures (--rounds or a section's)."""
    options = ("rounds", *(o for m in MODULES.values() for o in m.SIZE_OPTIONS))
    return any(getattr(args, o) != parser.get_default(o) for o in dict.fromkeys(options))


def selected_sections(args: argparse.Namespace) -> list[str]:
    sections = list(args.only or DEFAULT_SECTIONS)
    if args.profile and "profile" not in sections:
        sections.append("profile")
    return [s for s in SECTIONS if s in sections]


def run(
    args: argparse.Namespace, parser: argparse.ArgumentParser | None = None
) -> tuple[dict[str, Any], str]:
    """Run the selected sections; return the results and the run's UTC stamp."""
    mode = "quick" if args.quick else "full"
    sections = selected_sections(args)
    progress = Progress(enabled=not args.quiet)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": mode,
        "custom_sizes": custom_sizes(parser or build_parser(), args),
        "sections": sections,
        "started_at": started.isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
    }
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    clock = time.perf_counter()
    out_dir: Path = args.out
    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
    shared: dict[str, Any] = {}
    results["flame"] = _start_flames(args, out_dir, progress)
    with tempfile.TemporaryDirectory(prefix="devid-bench-", dir=args.tmp) as tmp:
        work = Path(tmp)
        results["machine"] = machine_info(work)
        for index, section in enumerate(sections, 1):
            section_dir = work / section
            section_dir.mkdir()
            progress(f"section {index}/{len(sections)}: {section}")
            servers.FLAME_SECTION = section
            section_clock = time.perf_counter()
            context = RunContext(
                options=args,
                mode=mode,
                sizes=MODES[mode],
                work_dir=section_dir,
                out_dir=out_dir,
                stamp=stamp,
                progress=progress,
                results=results,
                shared=shared,
            )
            try:
                results[section] = MODULES[section].run(context)
            except SectionSkipped as exc:
                skipped[section] = str(exc)
                progress(f"{section}: not measured: {exc}")
            except Exception as exc:
                errors[section] = f"{type(exc).__name__}: {exc}"
                progress(f"{section}: FAILED: {errors[section]}")
                if not isinstance(exc, BenchmarkError | ProcessError):
                    traceback.print_exc(file=sys.stderr)
            progress(f"section {section} took {time.perf_counter() - section_clock:.1f} s")
    servers.FLAME_DIR = None
    results["skipped"] = skipped
    results["errors"] = errors
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["duration_s"] = rounded(time.perf_counter() - clock, 1)
    if not args.no_plot:
        results["plot"] = _plot(results, out_dir, progress)
    progress.done()
    return results, stamp


def _start_flames(args: argparse.Namespace, out_dir: Path, progress: Progress) -> dict[str, Any]:
    """With --flame: where the flame graphs go (every server the run starts is sampled),
    or why there are none."""
    if not args.flame:
        return {"skipped": "not asked for (--flame)"}
    reason = servers.flame_missing()
    if reason is not None:
        progress(f"flame graphs: skipped: {reason}")
        return {"skipped": reason}
    servers.FLAME_DIR = out_dir / "flame"
    progress(f"flame graphs: every server sampled by py-spy into {servers.FLAME_DIR}")
    return {"dir": "flame", "rate_per_s": servers.FLAME_RATE}


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    results, stamp = run(args, parser)
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
