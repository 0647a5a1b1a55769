"""``python -m fuzz``: run every fuzz target under atheris for a bounded number of
executions, one target after another, and print a summary table.

Each target runs in its own process (``python -m fuzz.worker``) over a scratch
corpus seeded from ``fuzz/corpus/<target>/``. A crash stops that target: the
crashing input is saved in ``fuzz/crashes/<target>/`` and the run exits with
status 1. Afterwards the inputs that reached new code are merged (libFuzzer's
``-merge=1``, which keeps a smallest set covering the same code) into the
repository corpus, next to the ``seed-*`` files, unless ``--no-corpus-update``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs

from . import TARGETS
from .harness import CORPUS_DIR, FUZZ_DIR

CRASH_DIR = FUZZ_DIR / "crashes"
#: libFuzzer dictionaries (tokens and member names the mutations insert), per target.
DICTIONARIES_DIR = FUZZ_DIR / "dictionaries"
DEFAULT_RUNS = 1_000_000
#: A target's corpus holds at most this many files besides its seeds.
MAX_CORPUS_FILES = 300
#: Files the merge never drops: the seeds, and inputs that once crashed a parser.
KEPT_PREFIXES = ("seed-", "regression-")
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")
_PROGRESS = re.compile(r"^#(\d+)\s+(pulse|INITED|DONE)\b.*?exec/s: (\d+)")


@attrs.frozen
class Outcome:
    target: str
    executions: int
    exec_per_second: float
    seconds: float
    crashes: tuple[Path, ...]
    corpus_files: int
    # The worker exited with an error and left no crashing input (atheris missing...).
    failed: bool = False

    @property
    def result(self) -> str:
        if self.crashes:
            return "crash"
        return "error" if self.failed else "ok"


def _worker(target: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "fuzz.worker", target, *args]


def _max_len(corpus: Path) -> int:
    largest = max((p.stat().st_size for p in corpus.iterdir() if p.is_file()), default=0)
    return max(4096, 2 * largest)


def fuzz_target(target: str, runs: int, *, update_corpus: bool, seed: int | None) -> Outcome:
    corpus = CORPUS_DIR / target
    crashes = CRASH_DIR / target
    crashes.mkdir(parents=True, exist_ok=True)
    before = set(crashes.iterdir())
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as scratch:
        found = Path(scratch) / "found"
        found.mkdir()
        args = [
            str(found),
            str(corpus),
            f"-runs={runs}",
            f"-max_len={_max_len(corpus)}",
            f"-artifact_prefix={crashes}/",
            "-timeout=60",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ]
        dictionary = DICTIONARIES_DIR / f"{target}.dict"
        if dictionary.exists():
            args.append(f"-dict={dictionary}")
        if seed is not None:
            args.append(f"-seed={seed}")
        started = time.monotonic()
        returncode, stats = _run_reporting(target, _worker(target, *args))
        seconds = time.monotonic() - started
        new_crashes = tuple(sorted(set(crashes.iterdir()) - before))
        if update_corpus and returncode == 0:
            _merge(target, corpus, found, Path(scratch) / "merged")
    executions = stats.get("number_of_executed_units", 0)
    return Outcome(
        target=target,
        executions=executions,
        exec_per_second=executions / seconds if seconds else 0.0,
        seconds=seconds,
        crashes=new_crashes,
        corpus_files=sum(1 for p in corpus.iterdir() if p.is_file()),
        failed=returncode != 0 and not new_crashes,
    )


def _run_reporting(target: str, command: list[str]) -> tuple[int, dict[str, int]]:
    """Run a worker, echo its progress lines; its exit status and libFuzzer's statistics."""
    stats: dict[str, int] = {}
    tail: list[str] = []
    with subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env={**os.environ, "PYTHONHASHSEED": "0"},
        cwd=FUZZ_DIR.parent,
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:
            line = line.rstrip("\n")
            tail = [*tail[-60:], line]
            progress = _PROGRESS.match(line)
            stat = _STAT.match(line)
            if progress:
                print(
                    f"  {target}: {int(progress.group(1)):>9,} executions"
                    f" ({progress.group(2)}, {progress.group(3)} exec/s)",
                    flush=True,
                )
            elif stat:
                stats[stat.group(1)] = int(stat.group(2))
    if process.returncode != 0:
        print("\n".join(f"  {target}| {line}" for line in tail), file=sys.stderr, flush=True)
    return process.returncode, stats


def _merge(target: str, corpus: Path, found: Path, merged: Path) -> None:
    """Keep the seeds and regressions, and of the rest a smallest set covering the same code."""
    merged.mkdir()
    # libFuzzer's merge runs the fuzzer again as a child process, through this script.
    program = merged.parent / "worker"
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fuzz.worker {target} "$@"\n')
    program.chmod(0o755)
    subprocess.run(
        _worker(target, "-merge=1", str(merged), str(corpus), str(found)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "FUZZ_WORKER_PROGRAM": str(program)},
        cwd=FUZZ_DIR.parent,
        check=True,
    )
    kept = [p for p in corpus.iterdir() if p.name.startswith(KEPT_PREFIXES)]
    seeds = {hashlib.sha1(p.read_bytes()).hexdigest() for p in kept}
    keep = sorted(
        (p for p in merged.iterdir() if p.name not in seeds),
        key=lambda p: (p.stat().st_size, p.name),
    )[:MAX_CORPUS_FILES]
    for old in corpus.iterdir():
        if not old.name.startswith(KEPT_PREFIXES):
            old.unlink()
    for path in keep:
        shutil.copyfile(path, corpus / path.name)


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| target | executions | exec/s | wall time | crashes | corpus files | result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.target} | {o.executions:,} | {o.exec_per_second:,.0f} |"
            f" {o.seconds / 60:.1f} min | {len(o.crashes)} | {o.corpus_files} | {o.result} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fuzz",
        description=(
            "Fuzz every parser a client reaches without credentials (atheris, one target"
            " after another) and print a summary table. Exit status 1 if a target crashed"
            " (the input is saved in fuzz/crashes/TARGET/) or its fuzzer could not run."
        ),
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=int(os.environ.get("FUZZ_RUNS", DEFAULT_RUNS)),
        help="executions per target (default: $FUZZ_RUNS or 1,000,000)",
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=TARGETS,
        help="run only this target (repeatable; default: all of them)",
    )
    parser.add_argument(
        "--no-corpus-update",
        action="store_true",
        help="leave fuzz/corpus/ as it is (default: merge what the run found into it)",
    )
    parser.add_argument("--seed", type=int, help="libFuzzer's random seed (default: random)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument(
        "--write-seeds",
        action="store_true",
        help="rewrite fuzz/fixtures/ and the seed-* corpus files (needs tests/) and exit",
    )
    args = parser.parse_args(argv)
    if args.list:
        for target in TARGETS:
            print(target)
        return 0
    if args.write_seeds:
        from .seeds import write_all

        for directory in write_all():
            print(f"{directory.name}: {sum(1 for _ in directory.iterdir())} files")
        return 0
    outcomes: list[Outcome] = []
    for target in args.target or TARGETS:
        print(f"{target}: {args.runs:,} executions", flush=True)
        outcome = fuzz_target(
            target, args.runs, update_corpus=not args.no_corpus_update, seed=args.seed
        )
        outcomes.append(outcome)
        for crash in outcome.crashes:
            print(f"  {target}: CRASH, input saved as {crash}", flush=True)
        if outcome.failed:
            print(f"  {target}: the fuzzer failed (is atheris installed? make fuzz installs it)")
    print()
    print(time.strftime("%Y-%m-%d %H:%M %Z"))
    print(table(outcomes))
    return 0 if all(o.result == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
