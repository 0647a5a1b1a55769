"""A child process run for a test or a benchmark: started, waited for, always stopped.

:class:`ManagedProcess` starts a command with its standard output (and
standard error, or both in one file) written to files, optionally kept to
some CPUs. :meth:`~ManagedProcess.wait_for` polls a readiness check in a loop
bounded by a deadline; it fails at once if the process exits, and when it
fails the :class:`ProcessError` names the command and quotes the last lines of
its output, which is usually the whole explanation. :meth:`~ManagedProcess.stop`
sends SIGTERM, waits, sends SIGKILL if the process lingers, and always reaps
it; processes it forked (``devid serve --workers N``) that it remembered are
stopped the same way if they outlive it.

Process trees are read from ``/proc/PID/task/*/children`` (Linux 3.5 and
later); a process is told apart from a later one with the same pid by its
start time in ``/proc/PID/stat``. Only the standard library is used.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")

#: Seconds between two readiness checks.
POLL_INTERVAL = 0.05
#: Lines of output quoted in an error.
TAIL_LINES = 20
#: A bound on the processes followed below one process.
MAX_DESCENDANTS = 256


class ProcessError(RuntimeError):
    """A managed process exited early or did not become ready in time.

    The message names the command and ends with the last lines of its output.
    """

    def __init__(self, message: str, *, command: Sequence[str], returncode: int | None) -> None:
        super().__init__(message)
        self.command = list(command)
        self.returncode = returncode


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last *lines* lines of a text file ("" if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- /proc ------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The direct children of *pid* (of every one of its threads), sorted."""
    found: set[int] = set()
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            text = (task / "children").read_text()
        except OSError:
            continue
        found.update(int(part) for part in text.split())
    return sorted(found)


def descendants(pid: int) -> list[int]:
    """Every process below *pid*, breadth first (at most ``MAX_DESCENDANTS``)."""
    out: list[int] = []
    pending = children(pid)
    while pending and len(out) < MAX_DESCENDANTS:
        child = pending.pop(0)
        out.append(child)
        pending.extend(children(child))
    return out


def start_time(pid: int) -> int | None:
    """When *pid* started (clock ticks since boot); with the pid, a process's identity."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[19])


# --- the managed process ------------------------------------------------------------------------


class ManagedProcess:
    """A started command whose output goes to files.

    *stdout* receives standard output; *stderr* standard error, or, when it is
    None, standard error goes to *stdout* too. *env* None inherits this
    process's environment. *cpus* keeps the process (and every thread and child
    it makes) to those CPUs. Use it as a context manager, or call :meth:`stop`.
    """

    def __init__(
        self,
        command: Sequence[str | Path],
        *,
        stdout: Path,
        stderr: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        cpus: Sequence[int] | None = None,
        name: str | None = None,
    ) -> None:
        self.command = [str(part) for part in command]
        self.name = name or Path(self.command[0]).name
        self.stdout_path = stdout
        self.stderr_path = stderr
        self.cpus = tuple(cpus) if cpus is not None else None
        #: (pid, start time) of every process seen below this one, to stop leftovers.
        self._seen: dict[int, int | None] = {}
        stdout.parent.mkdir(parents=True, exist_ok=True)
        pinned = self.cpus

        def set_affinity() -> None:  # in the child, before exec: threads and children inherit it
            if pinned is not None:
                os.sched_setaffinity(0, pinned)

        with open(stdout, "wb") as out:
            if stderr is None:
                self.process = self._popen(out, subprocess.STDOUT, env, cwd, set_affinity)
            else:
                with open(stderr, "wb") as err:
                    self.process = self._popen(out, err, env, cwd, set_affinity)

    def _popen(
        self,
        out: IO[bytes],
        err: IO[bytes] | int,
        env: Mapping[str, str] | None,
        cwd: Path | None,
        set_affinity: Callable[[], None],
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            preexec_fn=set_affinity if self.cpus is not None else None,
        )

    # --- state ---------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self, lines: int = TAIL_LINES) -> str:
        """The last lines of what the process wrote, for an error message."""
        if self.stderr_path is None:
            return f"output (last lines):\n{tail(self.stdout_path, lines)}"
        return (
            f"stderr (last lines):\n{tail(self.stderr_path, lines)}\n"
            f"stdout (last lines):\n{tail(self.stdout_path, lines)}"
        )

    def failure(self, what: str) -> ProcessError:
        """A :class:`ProcessError` saying *what* went wrong, with the command and output."""
        return ProcessError(
            f"{self.name} {what}\ncommand: {' '.join(self.command)}\n{self.output()}",
            command=self.command,
            returncode=self.process.poll(),
        )

    def check_alive(self) -> None:
        """Raise :class:`ProcessError` if the process has exited."""
        code = self.process.poll()
        if code is not None:
            raise self.failure(f"exited with status {code}")

    # --- readiness -----------------------------------------------------------------------------

    def wait_for(self, probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
        """Call *probe* until it returns something other than None, and return that.

        Fails with :class:`ProcessError` as soon as the process exits, or once
        *timeout* seconds have passed ("NAME did not WHAT within N s").
        """
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            value = probe()
            if value is not None:
                return value
            if time.monotonic() >= deadline:
                raise self.failure(f"did not {what} within {timeout:g} s")
            time.sleep(POLL_INTERVAL)

    def wait_until(self, check: Callable[[], bool], *, timeout: float, what: str) -> None:
        """:meth:`wait_for` with a check that answers True once the process is ready."""
        self.wait_for(lambda: True if check() else None, timeout=timeout, what=what)

    # --- the process tree ----------------------------------------------------------------------

    def tree_pids(self) -> list[int]:
        """This process and every process below it; remembers them for :meth:`stop`."""
        pids = [self.pid, *descendants(self.pid)]
        for pid in pids:
            if pid not in self._seen:
                self._seen[pid] = start_time(pid)
        return pids

    def _leftovers(self) -> list[int]:
        """Remembered descendants still running (the same processes, not reused pids)."""
        return [
            pid
            for pid, started in self._seen.items()
            if pid != self.pid and started is not None and start_time(pid) == started
        ]

    # --- stopping ------------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after *timeout* seconds; reap the process; stop any
        remembered descendant it left running. Returns the exit status."""
        if self.process.poll() is None:
            self.tree_pids()
            with suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            leftovers = self._leftovers()
            if not leftovers:
                break
            for pid in leftovers:
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while leftovers and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL)
                leftovers = self._leftovers()
        return self.process.returncode

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
