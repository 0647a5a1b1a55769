"""Every fuzz target runs over its whole corpus (seeds, regressions and what the fuzzer
kept) without atheris: a target that no longer imports, or an input that once crashed
a parser and does again, fails here rather than in the next ``make fuzz``."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import TARGETS
from fuzz.harness import CORPUS_DIR, FUZZ_DIR, corpus

REPO = Path(__file__).resolve().parents[1]


def test_every_target_module_is_listed() -> None:
    modules = {p.stem for p in (FUZZ_DIR / "targets").glob("*.py") if p.stem != "__init__"}
    assert modules == set(TARGETS)
    assert {p.name for p in CORPUS_DIR.iterdir() if p.is_dir()} == set(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_the_target_passes_over_its_corpus(target: str) -> None:
    module = importlib.import_module(f"fuzz.targets.{target}")
    inputs = list(corpus(target))
    assert any(p.name.startswith("seed-") for p in inputs), "the corpus has no seeds"
    for path in inputs:
        module.test_one_input(path.read_bytes())


def test_the_runner_lists_its_targets() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fuzz", "--list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == list(TARGETS)


def test_the_readme_describes_every_target() -> None:
    readme = (FUZZ_DIR / "README.md").read_text()
    for target in TARGETS:
        assert f"| `{target}` |" in readme


def test_a_short_run_under_atheris_reports_its_executions() -> None:
    """The runner itself (needs the fuzz extra: make fuzz installs it)."""
    pytest.importorskip("atheris")
    command = ["--runs", "500", "--target", "scalars", "--no-corpus-update", "--seed", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "fuzz", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| scalars |"))
    assert "| 500 |" in row and row.endswith("| ok |")
