"""Processes measured from outside: CPU time and memory, read from /proc.

A ``devid serve --workers N`` is a supervisor process plus N forked workers;
its cost is the sum over that tree. Children are found through
``/proc/PID/task/*/children`` (Linux >= 3.5, :mod:`hosts.testing.processes`),
so no extra dependency is needed. Every reader tolerates a process that exits
while it is being read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from hosts.testing.processes import children as children
from hosts.testing.processes import descendants as descendants

#: The /proc/PID/status fields kept (kB): resident now, and the high-water mark.
MEMORY_FIELDS = ("VmRSS", "VmHWM")


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/status (VmRSS, VmHWM, ...); empty if *pid* is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[name] = int(parts[0])
    except OSError:
        pass
    return out


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of *pid* (all its threads), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass(frozen=True)
class TreeMemory:
    """Memory of a process and its descendants, in KiB."""

    #: pid -> {"VmRSS": kib, "VmHWM": kib}
    per_process: dict[int, dict[str, int]]
    root: int

    def total(self, field: str) -> int | None:
        values = [m[field] for m in self.per_process.values() if field in m]
        return sum(values) if values else None

    def of(self, pid: int, field: str) -> int | None:
        return self.per_process.get(pid, {}).get(field)

    def workers(self, field: str) -> int | None:
        """The sum over the children only (the supervisor left out)."""
        values = [
            m[field] for pid, m in self.per_process.items() if pid != self.root and field in m
        ]
        return sum(values) if values else None

    def to_json(self) -> dict[str, object]:
        return {
            "processes": len(self.per_process),
            "rss_kib": self.total("VmRSS"),
            "hwm_kib": self.total("VmHWM"),
            "root_hwm_kib": self.of(self.root, "VmHWM"),
            "children_hwm_kib": self.workers("VmHWM"),
        }


def tree_memory(pid: int) -> TreeMemory:
    """VmRSS and VmHWM of *pid* and of every descendant."""
    per: dict[int, dict[str, int]] = {}
    for member in [pid, *descendants(pid)]:
        status = proc_status(member)
        kept = {k: status[k] for k in MEMORY_FIELDS if k in status}
        if kept:
            per[member] = kept
    return TreeMemory(per, pid)


def tree_cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds per pid (processes already gone are left out)."""
    out: dict[int, float] = {}
    for pid in pids:
        seconds = proc_cpu_seconds(pid)
        if seconds is not None:
            out[pid] = seconds
    return out


def usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))
