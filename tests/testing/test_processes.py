"""hosts.testing.processes: readiness is bounded and explained; stopping always works."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from hosts.testing.processes import ManagedProcess, ProcessError, children, start_time


def python(code: str, tmp_path: Path, **options: object) -> ManagedProcess:
    return ManagedProcess(
        [sys.executable, "-c", code], stdout=tmp_path / "out.log", name="probe", **options
    )  # type: ignore[arg-type]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_a_process_that_never_becomes_ready_fails_within_the_bound(tmp_path: Path) -> None:
    code = "import time; print('listening on nothing at all', flush=True); time.sleep(60)"
    with python(code, tmp_path) as process:
        started = time.monotonic()
        with pytest.raises(ProcessError) as raised:
            process.wait_until(lambda: False, timeout=1.0, what="answer /health")
        assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "probe did not answer /health within 1 s" in message
    assert "listening on nothing at all" in message  # its output explains it
    assert sys.executable in message  # and the command
    assert raised.value.returncode is None
    assert gone(process.pid)


def test_a_process_that_exits_fails_at_once_with_its_status_and_output(tmp_path: Path) -> None:
    code = "import sys; sys.stderr.write('cannot open the database\\n'); sys.exit(3)"
    process = ManagedProcess(
        [sys.executable, "-c", code],
        stdout=tmp_path / "out.log",
        stderr=tmp_path / "err.log",
        name="probe",
    )
    started = time.monotonic()
    with pytest.raises(ProcessError) as raised:
        process.wait_until(lambda: False, timeout=30.0, what="start")
    assert time.monotonic() - started < 10
    assert "probe exited with status 3" in str(raised.value)
    assert "cannot open the database" in str(raised.value)
    assert raised.value.returncode == 3
    assert process.stop() == 3


def test_wait_for_returns_what_the_probe_found(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    with python("print('port 4242', flush=True); import time; time.sleep(60)", tmp_path) as process:
        found = process.wait_for(
            lambda: "4242" if "4242" in out.read_text() else None, timeout=10, what="say its port"
        )
        assert found == "4242"


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('ready', flush=True); time.sleep(60)"
    )
    process = python(code, tmp_path)
    process.wait_until(lambda: "ready" in (tmp_path / "out.log").read_text(), timeout=10, what="x")
    assert process.stop(timeout=0.5) == -signal.SIGKILL
    assert gone(process.pid)


def test_children_left_by_a_killed_parent_are_stopped(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time;"
        " subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        " time.sleep(60)"
    )
    process = python(code, tmp_path)
    child = process.wait_for(lambda: (children(process.pid) or [None])[0], timeout=10, what="fork")
    assert start_time(child) is not None
    process.tree_pids()  # remembered, as a server's workers are once it is ready
    process.process.kill()  # the parent dies without stopping its child
    process.process.wait(timeout=10)
    process.stop()
    deadline = time.monotonic() + 10
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(child)


def test_a_pinned_process_runs_on_those_cpus(tmp_path: Path) -> None:
    import os

    cpu = sorted(os.sched_getaffinity(0))[0]
    code = "import os; print(sorted(os.sched_getaffinity(0)), flush=True)"
    process = python(code, tmp_path, cpus=(cpu,))
    assert process.process.wait(timeout=10) == 0
    assert (tmp_path / "out.log").read_text().strip() == f"[{cpu}]"
