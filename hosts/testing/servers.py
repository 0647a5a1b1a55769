"""devid for tests and benchmarks: the command, ``devid serve`` in a subprocess, a host in process.

Three ways to run devid, each on 127.0.0.1 only:

- :func:`run_devid` runs one ``devid`` command (the console script next to
  this interpreter, else ``python -m hosts.cli``) with the caller's
  ``DEVID_*`` variables removed from the environment (:func:`clean_env`), so a
  developer's own settings never leak into a test.
- :func:`start_devid_serve` (and the context manager :func:`devid_serve`)
  starts ``devid serve --data DIR --listen 127.0.0.1:PORT`` on either host
  (``--host quart`` or ``--host raw``, with ``--workers N`` for the raw host).
  With port 0 the server binds a free port itself and the URL is read from
  the lines it prints once it listens. The server is ready when ``GET
  /health`` answers 200 over TLS verified against the CA's root (the data
  directory's own root by default, read after the server has initialised an
  empty directory). A server that exits, or does not answer within the
  bound, is stopped and reported with the last lines of its output. The
  result, :class:`DevidServer`, gives the URL, the root, the data directory and
  the :class:`~hosts.testing.processes.ManagedProcess`; :meth:`DevidServer.launch`
  and :meth:`DevidServer.wait_ready` do the two halves apart, so that several
  servers start together.
- :func:`start_in_process` serves an already loaded ``Authority`` through a
  host's ``serve`` coroutine inside the caller's trio nursery (port 0), for
  tests that reach into the authority while it serves; :func:`serving_in_process`
  is the same with a nursery of its own.

The hosts (and trio) are imported only when :func:`start_in_process` runs.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .ports import LOOPBACK, require_loopback
from .processes import ManagedProcess, ProcessError

if TYPE_CHECKING:
    import trio

    from hosts.core.authority import Authority

#: The hosts ``devid serve --host`` offers.
HOSTS = ("quart", "raw")
HEALTH_PATH = "/health"
#: The default bound on a server's start, in seconds.
START_TIMEOUT = 30.0
#: A URL line ``devid serve`` prints once it listens (one per address it serves).
_URL_LINE = re.compile(r"^\s+(https://\S+)$", re.M)


# --- the devid command ------------------------------------------------------------------------


def devid_command() -> list[str]:
    """The ``devid`` console script next to this interpreter, else ``python -m hosts.cli``."""
    script = Path(sys.executable).with_name("devid")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "hosts.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without its ``DEVID_*`` variables, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVID_")}
    env.update(extra)
    return env


def run_devid(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``devid ARGS`` to completion (environment: *env*, else :func:`clean_env`).

    With *check*, a non-zero exit raises :class:`ProcessError` quoting its output.
    """
    command = [*devid_command(), *map(str, args)]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else clean_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise ProcessError(
            f"devid {' '.join(map(str, args))} exited with status {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}",
            command=command,
            returncode=result.returncode,
        )
    return result


# --- health -----------------------------------------------------------------------------------


def tls_context(root: Path) -> ssl.SSLContext:
    """A client context that trusts only the CA root in *root* (PEM)."""
    return ssl.create_default_context(cafile=str(root))


def _healthy(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(f"{url}{HEALTH_PATH}").status_code == 200
    except httpx.HTTPError:
        return False


def _health_client(root: Path | None) -> httpx.Client:
    # Without a root (a directory devid serve is still initialising) the certificate is
    # not checked: only /health is fetched that way.
    verify: ssl.SSLContext | bool = tls_context(root) if root is not None else False
    return httpx.Client(verify=verify, timeout=2.0, trust_env=False)


def wait_for_health(
    url: str,
    root: Path | None,
    process: ManagedProcess | subprocess.Popen[Any],
    *,
    timeout: float = START_TIMEOUT,
) -> None:
    """Poll ``URL/health`` until it answers 200; fail if *process* exits or *timeout* passes.

    *url* must be a loopback URL. *process* may be a :class:`ManagedProcess` (its
    output is quoted on failure) or any ``Popen``.
    """
    host = httpx.URL(url).host
    require_loopback(f"{host}:0")
    with _health_client(root) as http:
        if isinstance(process, ManagedProcess):
            process.wait_until(
                lambda: _healthy(http, url), timeout=timeout, what=f"answer {url}{HEALTH_PATH}"
            )
            return
        deadline = time.monotonic() + timeout
        while not _healthy(http, url):
            code = process.poll()
            if code is not None:
                raise ProcessError(
                    f"{process.args!r} exited with status {code} before {url}{HEALTH_PATH}"
                    " answered",
                    command=[str(process.args)],
                    returncode=code,
                )
            if time.monotonic() >= deadline:
                raise ProcessError(
                    f"{url}{HEALTH_PATH} did not answer within {timeout:g} s",
                    command=[str(process.args)],
                    returncode=None,
                )
            time.sleep(0.05)


# --- devid serve in a subprocess ----------------------------------------------------------------


def serve_command(
    data_dir: Path,
    *,
    port: int = 0,
    host: str | None = None,
    password_file: Path | None = None,
    workers: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``devid serve`` command line :func:`start_devid_serve` runs."""
    command = [*devid_command(), "serve", "--data", str(data_dir)]
    command += ["--listen", require_loopback(f"{LOOPBACK}:{port}")]
    if host is not None:
        if host not in HOSTS:
            raise ValueError(f"unknown host {host!r}: one of {', '.join(HOSTS)}")
        command += ["--host", host]
    if password_file is not None:
        command += ["--password-file", str(password_file)]
    if workers != 1:
        command += ["--workers", str(workers)]
    return [*command, *extra]


def _printed_urls(path: Path) -> tuple[str, ...] | None:
    """The URLs ``devid serve`` printed once listening (whole lines only), or None yet."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    text = text[: text.rfind("\n") + 1]
    urls = tuple(_URL_LINE.findall(text))
    return urls if any(u.startswith(f"https://{LOOPBACK}:") for u in urls) else None


def _configured_root(data_dir: Path) -> Path:
    from hosts.core.config import load_config

    return load_config(data_dir).root.certificate


class DevidServer:
    """``devid serve`` in a subprocess: started by :meth:`launch`, ready after
    :meth:`wait_ready` (or both at once: :func:`start_devid_serve`).

    Launching several servers before waiting for any lets them start together.
    """

    def __init__(
        self, process: ManagedProcess, data_dir: Path, host: str | None, stdout: Path
    ) -> None:
        self.process = process
        self.data_dir = data_dir
        #: The ``--host`` asked for (None: devid's default, or what the extra arguments say).
        self.host = host
        self.stdout_path = stdout
        self._urls: tuple[str, ...] = ()
        self._root: Path | None = None

    @classmethod
    def launch(
        cls,
        data_dir: Path,
        logs: Path,
        *,
        port: int = 0,
        host: str | None = None,
        password_file: Path | None = None,
        workers: int = 1,
        cpus: Sequence[int] | None = None,
        env: Mapping[str, str] | None = None,
        extra: Sequence[str] = (),
    ) -> DevidServer:
        """Start ``devid serve`` (see :func:`start_devid_serve`) without waiting for it."""
        command = serve_command(
            data_dir,
            port=port,
            host=host,
            password_file=password_file,
            workers=workers,
            extra=extra,
        )
        stdout = logs.with_suffix(".out")
        if stdout == logs:
            stdout = logs.with_name(logs.name + ".out")
        process = ManagedProcess(
            command,
            stdout=stdout,
            stderr=logs,
            env=env if env is not None else clean_env(),
            cpus=cpus,
            name="devid serve",
        )
        return cls(process, data_dir, host, stdout)

    def wait_ready(
        self, *, root: Path | None = None, timeout: float = START_TIMEOUT
    ) -> DevidServer:
        """Wait until the server printed its URL and ``/health`` answers over TLS
        verified against *root* (default: the data directory's root). On failure the
        server is stopped and :class:`ProcessError` quotes its output."""
        try:
            deadline = time.monotonic() + timeout
            urls = self.process.wait_for(
                lambda: _printed_urls(self.stdout_path),
                timeout=timeout,
                what="print the URL it serves",
            )
            self._urls = urls
            trusted = root if root is not None else _configured_root(self.data_dir)
            remaining = max(deadline - time.monotonic(), 1.0)
            wait_for_health(self.url, trusted, self.process, timeout=remaining)
            self._root = trusted
            self.process.tree_pids()  # remember the workers, to stop them if the supervisor dies
        except BaseException:
            self.process.stop()
            raise
        return self

    @property
    def urls(self) -> tuple[str, ...]:
        """Every URL the server printed (127.0.0.1 and localhost)."""
        if not self._urls:
            raise RuntimeError("devid serve is not ready yet: call wait_ready()")
        return self._urls

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``"""
        return next(u for u in self.urls if u.startswith(f"https://{LOOPBACK}:"))

    @property
    def root_path(self) -> Path:
        """The CA root the server's TLS certificate chains to."""
        if self._root is None:
            raise RuntimeError("devid serve is not ready yet: call wait_ready()")
        return self._root

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def command(self) -> list[str]:
        return self.process.command

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL) and any worker it left; its exit status."""
        return self.process.stop(timeout)


def start_devid_serve(
    data_dir: Path,
    logs: Path,
    *,
    port: int = 0,
    host: str | None = None,
    root: Path | None = None,
    password_file: Path | None = None,
    workers: int = 1,
    cpus: Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
) -> DevidServer:
    """Start ``devid serve`` on 127.0.0.1 and return once ``/health`` answers.

    Standard error (devid's log) goes to *logs*, standard output to
    ``logs.with_suffix(".out")``. *port* 0 lets the server choose a free port.
    *host* None leaves ``--host`` out (devid's default, or whatever *extra*
    says). *root* defaults to the data directory's own CA root. *env* defaults
    to :func:`clean_env`; *cpus* keeps the server and its workers to those CPUs.
    Raises :class:`ProcessError`, with the server's output, if it exits or is
    not ready within *timeout* seconds; the process is stopped first.
    """
    server = DevidServer.launch(
        data_dir,
        logs,
        port=port,
        host=host,
        password_file=password_file,
        workers=workers,
        cpus=cpus,
        env=env,
        extra=extra,
    )
    return server.wait_ready(root=root, timeout=timeout)


@contextmanager
def devid_serve(data_dir: Path, logs: Path, **options: Any) -> Iterator[DevidServer]:
    """:func:`start_devid_serve` for the duration of a ``with`` block; always stopped."""
    server = start_devid_serve(data_dir, logs, **options)
    try:
        yield server
    finally:
        server.stop()


# --- a host in process -----------------------------------------------------------------------


def serve_function(host: str) -> Callable[..., Any]:
    """The ``serve`` coroutine of a host by name (both take the same arguments)."""
    if host == "raw":
        from hosts.raw import serve as raw_serve

        return raw_serve
    if host == "quart":
        from hosts.quart import serve as quart_serve

        return quart_serve
    raise ValueError(f"unknown host {host!r}: one of {', '.join(HOSTS)}")


class InProcessServer:
    """A host serving an authority inside a trio nursery (see :func:`start_in_process`)."""

    def __init__(self, host: str) -> None:
        import trio

        self.host = host
        self.urls: list[str] = []
        self._requested = trio.Event()
        self._finished = trio.Event()

    @property
    def url(self) -> str:
        """The ``https://127.0.0.1:PORT`` URL among those served."""
        return next(u for u in self.urls if f"//{LOOPBACK}:" in u)

    def request_stop(self) -> None:
        """Ask the server to shut down (as SIGTERM does) and return at once."""
        self._requested.set()

    async def stop(self, timeout: float = 15.0) -> None:
        """Shut the server down and wait (at most *timeout* s) until ``serve`` has
        returned, so its background threads are done with the authority's store."""
        import trio

        self._requested.set()
        with trio.move_on_after(timeout):
            await self._finished.wait()


async def start_in_process(
    authority: Authority,
    nursery: trio.Nursery,
    host: str = "quart",
    listen: str = f"{LOOPBACK}:0",
) -> InProcessServer:
    """Serve *authority* through *host* in *nursery*; return once it listens.

    The caller stops it with :meth:`InProcessServer.stop` before closing the
    authority.
    """
    serve = serve_function(host)
    require_loopback(listen)
    served = InProcessServer(host)

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(
                authority, listen, shutdown_trigger=served._requested.wait, task_status=task_status
            )
        finally:
            served._finished.set()

    served.urls = list(await nursery.start(run))
    return served


@asynccontextmanager
async def serving_in_process(
    authority: Authority, host: str = "quart"
) -> AsyncIterator[InProcessServer]:
    """:func:`start_in_process` in a nursery of its own, stopped when the block ends."""
    import trio

    async with trio.open_nursery() as nursery:
        served = await start_in_process(authority, nursery, host)
        try:
            yield served
        finally:
            await served.stop()
