"""The benchmark's sections, one module each, and what :mod:`benchmarks.cli` needs of them.

Every section module has:

- ``NAME``: the section's name (``--only NAME``, its key in the results);
- ``SUMMARY``: its lines in ``--help``'s description;
- ``FIGURES``: its part of ``--help``'s explanation of every figure;
- ``add_options(parser)``: its own command-line options (a group of ``--help``);
- ``SIZE_OPTIONS``: those of its options that change how much is measured (a
  run that sets one is marked ``custom_sizes``);
- ``run(context)``: measure, and return the section's results (a JSON object).

A section that cannot run on this machine raises
:class:`benchmarks.common.SectionSkipped`; one that fails raises anything else
(:class:`benchmarks.common.BenchmarkError` for an expected failure, printed
without a traceback). :data:`SECTIONS` is the order in which they run;
``device_attest`` is measured inside ``attestation`` and has options and figures
but no ``run``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.keys import KeyType

from ..common import Progress

#: Every section, in the order they run and are explained.
SECTIONS = (
    "inprocess",
    "breakdown",
    "http",
    "accounts",
    "scep",
    "oidc",
    "cloud",
    "scaling",
    "attestation",
    "soak",
    "acme",
    "fleet",
    "profile",
)
#: What a run measures without --only: everything but the profile.
DEFAULT_SECTIONS = (
    "inprocess",
    "breakdown",
    "http",
    "accounts",
    "scep",
    "oidc",
    "cloud",
    "scaling",
    "attestation",
    "soak",
    "acme",
    "fleet",
)


@dataclass
class RunContext:
    """What a section's ``run`` gets: the options, the mode's sizes, where to work."""

    options: argparse.Namespace
    #: The mode (``quick`` or ``full``) and its default sizes (benchmarks.cli.MODES).
    mode: str
    sizes: Mapping[str, Any]
    #: A fresh temporary directory for this section.
    work_dir: Path
    #: Where the results are written (--out), and the run's UTC stamp.
    out_dir: Path
    stamp: str
    progress: Progress
    #: The results of the sections that ran before this one.
    results: Mapping[str, Any]
    #: Figures one section measures for a later one (the in-process reference).
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.mode == "quick"

    def size(self, option: str, size: str) -> Any:
        """The value of *option* if given on the command line, else the mode's *size*."""
        value = getattr(self.options, option)
        return value if value is not None else self.sizes[size]


# --- option types --------------------------------------------------------------------------


def parse_key_type(text: str) -> KeyType:
    try:
        return KeyType.parse(text)
    except Exception as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,8,32") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("concurrency levels must be positive")
    return values


def add_levels_option(
    group: argparse._ArgumentGroup, flag: str, default: tuple[int, ...], help: str
) -> None:
    """A section's concurrency levels, comma-separated (:func:`parse_levels`)."""
    group.add_argument(flag, type=parse_levels, default=default, metavar="LIST", help=help)


def add_count_option(group: argparse._ArgumentGroup, flag: str, help: str) -> None:
    """A positive count, None when not given (the mode's size then)."""
    group.add_argument(flag, type=parse_positive, metavar="N", help=help)


def add_hosts_option(
    group: argparse._ArgumentGroup, flag: str, choices: Sequence[str], help: str
) -> None:
    """The hosts a section starts, repeatable, None when not given (its default hosts)."""
    group.add_argument(flag, action="append", choices=choices, metavar="NAME", help=help)


def requests_for(
    table: Mapping[int, int], concurrency: Sequence[int], override: int | None
) -> list[int]:
    """The count for each level: *override*, else the table's (its largest for other levels)."""
    if override is not None:
        return [override for _ in concurrency]
    return [table.get(level, max(table.values())) for level in concurrency]
