"""Software TPMs (swtpm) standing in for a device's TPM 2.0.

Used by ``devid agent swtpm start|stop|status`` (a swtpm that outlives the
command, kept in a directory of its own), by the test fixtures in
``tests/swtpm.py`` (swtpm instances as child processes), and by anything else
that needs a TPM with real EK certificates on a machine without one.

A TPM state is provisioned by ``swtpm_setup`` with EK certificates issued by
a private ``swtpm_localca``: a self-signed root (``CN=swtpm-localca-rootca``)
and an intermediate (``CN=swtpm-localca``) that signs the EK certificates.
The TPM holds only the leaf, so a verifier must trust the root *and* the
intermediate (:attr:`LocalCA.bundle`).

``swtpm_setup --create-ek-cert`` always creates an RSA-2048 EK (certificate at
NV 0x01c00002, persistent at 0x81010001) and an ECC P-384 EK (0x01c00016,
0x81010016); :func:`restrict_eks` removes one or both to make single-EK
variants (this needs tpm2-pytss, the ``agent`` extra).

swtpm listens on 127.0.0.1 only: TCP port P for TPM commands, P+1 for its
control channel. Nothing here needs tpm2-pytss except :func:`restrict_eks`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from .state import AgentError

__all__ = [
    "BUNDLE_FILE",
    "DEFAULT_PORT",
    "EK_TYPES",
    "HOST",
    "LocalCA",
    "RunningSwtpm",
    "Swtpm",
    "SwtpmDirectory",
    "SwtpmError",
    "SwtpmImage",
    "free_port_pair",
    "launch",
    "make_image",
    "missing_tools",
    "port_free",
    "provision",
    "require_tools",
    "restrict_eks",
    "run_swtpm",
    "stop_process",
    "swtpm_available",
    "tcti_for",
]

#: EK variants: what :func:`restrict_eks` leaves in the TPM ("both" is swtpm_setup's result).
EK_TYPES = ("rsa", "ecc", "both", "none")
RSA_EK_CERT_INDEX = 0x01C00002
ECC_EK_CERT_INDEX = 0x01C00016
RSA_EK_PERSISTENT = 0x81010001
ECC_EK_PERSISTENT = 0x81010016
#: The file holding a TPM 2.0 state (6 kB); copying it copies the TPM.
STATE_FILE = "tpm2-00.permall"
#: Where swtpm listens: loopback only.
HOST = "127.0.0.1"
DEFAULT_PORT = 2321
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
#: Root and intermediate of the local CA in one PEM file (in a :class:`SwtpmDirectory`).
BUNDLE_FILE = "ek-ca-bundle.pem"

REQUIRED_TOOLS = ("swtpm", "swtpm_setup", "swtpm_localca")
INSTALL_HINT = "`make test` and `make serve` install it, or run `apt-get install swtpm swtpm-tools`"


class SwtpmError(AgentError):
    """swtpm cannot be set up, started or stopped; the message says why, in one line."""


def missing_tools() -> list[str]:
    """The swtpm programs not found on $PATH."""
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def swtpm_available() -> bool:
    return not missing_tools()


def require_tools() -> None:
    missing = missing_tools()
    if missing:
        raise SwtpmError(
            f"swtpm is not installed ({', '.join(missing)} not found on PATH): {INSTALL_HINT}"
        )


def tcti_for(port: int) -> str:
    """The TCTI string (tpm2-tools syntax) of a swtpm on *port*."""
    return f"swtpm:host={HOST},port={port}"


# --- the local CA -------------------------------------------------------------------------


@attrs.frozen
class LocalCA:
    """swtpm-localca's CA: a root and the intermediate that signs EK certificates."""

    directory: Path

    @property
    def root(self) -> Path:
        """The self-signed root, ``swtpm-localca-rootca-cert.pem``."""
        return self.directory / "swtpm-localca-rootca-cert.pem"

    @property
    def intermediate(self) -> Path:
        """The issuer of the EK certificates (CN=swtpm-localca), not stored in the TPM."""
        return self.directory / "issuercert.pem"

    @property
    def bundle(self) -> Path:
        """Root and intermediate in one PEM file: what a verifier must trust, because the
        device sends only its EK certificate."""
        path = self.directory / BUNDLE_FILE
        if not path.exists():
            self.write_bundle(path)
        return path

    def bundle_pem(self) -> bytes:
        try:
            return self.root.read_bytes() + self.intermediate.read_bytes()
        except OSError as exc:
            raise SwtpmError(f"cannot read the local CA in {self.directory}: {exc}") from None

    def write_bundle(self, path: Path) -> Path:
        """Write root + intermediate (PEM) to *path*."""
        try:
            path.write_bytes(self.bundle_pem())
        except OSError as exc:
            raise SwtpmError(f"cannot write {path}: {exc}") from None
        return path


# --- ports and processes ------------------------------------------------------------------


def port_free(port: int) -> bool:
    """Whether *port* can be bound on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A port P with P and P+1 both free on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port < 65535 and port_free(port + 1):
            return port
    raise SwtpmError("no free port pair found on 127.0.0.1")


def _answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """Terminate a swtpm child and reap it (so no zombie is left behind)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SwtpmError(f"swtpm exited during start-up (status {process.returncode})")
        if _answers(port):
            return
        time.sleep(0.01)
    raise SwtpmError(f"swtpm did not answer on port {port} within {timeout:g} s")


def swtpm_command(
    state_dir: Path, port: int, *, pid_file: Path | None = None, log_file: Path | None = None
) -> list[str]:
    """The ``swtpm socket`` command line: TPM 2.0 on 127.0.0.1:*port* (control on port+1),
    already powered on and started up (TPM2_Startup(CLEAR))."""
    command = [
        "swtpm",
        "socket",
        "--tpm2",
        "--tpmstate",
        f"dir={state_dir}",
        "--server",
        f"type=tcp,port={port},bindaddr={HOST}",
        "--ctrl",
        f"type=tcp,port={port + 1},bindaddr={HOST}",
        "--flags",
        "not-need-init,startup-clear",
    ]
    if pid_file is not None:
        command += ["--pid", f"file={pid_file}"]
    if log_file is not None:
        command += ["--log", f"file={log_file}"]
    return command


def launch(
    state_dir: Path,
    port: int,
    *,
    pid_file: Path | None = None,
    log_file: Path | None = None,
    errors_file: Path | None = None,
    detach: bool = False,
    timeout: float = START_TIMEOUT,
) -> subprocess.Popen[bytes]:
    """Start swtpm on *state_dir* and return once it answers on *port*.

    swtpm runs without ``--daemon``, as our child, so a failed start is seen at
    once and, in tests, every instance can be reaped. With *detach* it gets a
    session of its own (no terminal signals) and outlives this process. Its
    stderr goes to *errors_file* (default ``state_dir/swtpm.err``) and is quoted
    in the error if it does not start.
    """
    errors = errors_file if errors_file is not None else state_dir / "swtpm.err"
    command = swtpm_command(state_dir, port, pid_file=pid_file, log_file=log_file)
    try:
        with errors.open("wb") as sink:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                start_new_session=detach,
            )
    except FileNotFoundError:
        raise SwtpmError(f"swtpm is not installed: {INSTALL_HINT}") from None
    except OSError as exc:
        raise SwtpmError(f"cannot start swtpm: {exc}") from None
    try:
        _wait_listening(port, process, timeout)
    except SwtpmError as exc:
        stop_process(process)
        detail = errors.read_text(errors="replace").strip().replace("\n", "; ")
        raise SwtpmError(f"{exc}: {detail}" if detail else str(exc)) from None
    return process


@attrs.define
class Swtpm:
    """A running swtpm, our child process; :meth:`stop` terminates and reaps it."""

    ek_type: str
    port: int
    state_dir: Path
    process: subprocess.Popen[bytes] = attrs.field(repr=False, eq=False)
    ca: LocalCA

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ctrl_port(self) -> int:
        return self.port + 1

    @property
    def tcti(self) -> str:
        return tcti_for(self.port)

    @property
    def ek_root(self) -> Path:
        return self.ca.root

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self) -> None:
        """Power-cycle: stop, then start again on the same state (on a new port pair)."""
        self.stop()
        fresh = run_swtpm(self.state_dir, ek_type=self.ek_type, ca=self.ca)
        self.port, self.process = fresh.port, fresh.process


def run_swtpm(state_dir: Path, *, ek_type: str, ca: LocalCA, port: int | None = None) -> Swtpm:
    """Start swtpm on *state_dir* as our child and wait until it answers.

    Without *port*, a free port pair is picked (and another one tried if it was
    taken meanwhile). swtpm writes ``swtpm.pid`` and ``swtpm.log`` into the state
    directory.
    """
    last_error = ""
    for _ in range(1 if port is not None else 5):
        chosen = port if port is not None else free_port_pair()
        try:
            process = launch(
                state_dir,
                chosen,
                pid_file=state_dir / "swtpm.pid",
                log_file=state_dir / "swtpm.log",
            )
        except SwtpmError as exc:
            last_error = str(exc)
            continue  # most likely a port taken meanwhile: try another pair
        return Swtpm(ek_type, chosen, state_dir, process, ca)
    raise SwtpmError(f"swtpm did not start: {last_error}")


# --- provisioning -------------------------------------------------------------------------


def _write_setup_config(directory: Path, ca: LocalCA, localca_tool: str) -> Path:
    localca_conf = directory / "swtpm-localca.conf"
    localca_conf.write_text(
        f"statedir = {ca.directory}\n"
        f"signingkey = {ca.directory / 'signkey.pem'}\n"
        f"issuercert = {ca.intermediate}\n"
        f"certserial = {ca.directory / 'certserial'}\n"
    )
    # Without these, swtpm_localca refuses to make the platform certificate.
    options = directory / "swtpm-localca.options"
    options.write_text(
        "--platform-manufacturer devid\n--platform-version 2.1\n--platform-model devid-test\n"
    )
    setup_conf = directory / "swtpm_setup.conf"
    setup_conf.write_text(
        f"create_certs_tool = {localca_tool}\n"
        f"create_certs_tool_config = {localca_conf}\n"
        f"create_certs_tool_options = {options}\n"
        "active_pcr_banks = sha256\n"
    )
    return setup_conf


def provision(directory: Path) -> tuple[Path, LocalCA]:
    """Run swtpm_setup once with a private swtpm-localca: a TPM state with RSA and ECC
    EK certificates and a platform certificate.

    Creates ``directory/state`` (the TPM), ``directory/localca`` (the CA, its
    signing key included) and the configuration files beside them. Returns
    (state dir, local CA).
    """
    require_tools()
    localca_tool = shutil.which("swtpm_localca") or "swtpm_localca"
    ca = LocalCA(directory / "localca")
    state = directory / "state"
    ca.directory.mkdir(parents=True)
    state.mkdir()
    setup_conf = _write_setup_config(directory, ca, localca_tool)
    command = [
        "swtpm_setup",
        "--tpm2",
        "--tpmstate",
        str(state),
        "--create-ek-cert",
        "--create-platform-cert",
        "--config",
        str(setup_conf),
        "--overwrite",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SwtpmError(f"swtpm_setup failed: {exc}") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().replace("\n", "; ")
        raise SwtpmError(f"swtpm_setup failed: {detail}")
    return state, ca


#: What each variant removes: (EK certificate NV index, persistent EK handle) pairs.
_REMOVED: dict[str, list[tuple[int, int]]] = {
    "rsa": [(ECC_EK_CERT_INDEX, ECC_EK_PERSISTENT)],
    "ecc": [(RSA_EK_CERT_INDEX, RSA_EK_PERSISTENT)],
    "both": [],
    "none": [(RSA_EK_CERT_INDEX, RSA_EK_PERSISTENT), (ECC_EK_CERT_INDEX, ECC_EK_PERSISTENT)],
}


def _remove_eks(tcti: str, removals: list[tuple[int, int]]) -> None:
    """Undefine EK certificate indices (platform auth) and evict the persistent EKs."""
    os.environ.setdefault("TSS2_LOG", "all+none")
    try:
        from tpm2_pytss import ESAPI, TSS2_Exception
        from tpm2_pytss.constants import ESYS_TR, TPM2_SU
    except ImportError as exc:
        raise SwtpmError(
            f"a single-EK swtpm needs tpm2-pytss (pip install 'devid[agent]'): {exc}"
        ) from None
    try:
        with ESAPI(tcti) as esapi:
            for nv_index, persistent in removals:
                index = esapi.tr_from_tpmpublic(nv_index)
                esapi.nv_undefine_space(index, ESYS_TR.PLATFORM)
                key = esapi.tr_from_tpmpublic(persistent)
                esapi.evict_control(ESYS_TR.OWNER, key, persistent)
            esapi.shutdown(TPM2_SU.CLEAR)
    except TSS2_Exception as exc:
        raise SwtpmError(f"cannot remove the other EK from the swtpm: {exc}") from None


def restrict_eks(state_dir: Path, ek_type: str, ca: LocalCA) -> None:
    """Leave only the *ek_type* EK(s) in a freshly provisioned state, in place."""
    if ek_type not in EK_TYPES:
        raise ValueError(f"ek_type must be one of {EK_TYPES}")
    if _REMOVED[ek_type]:
        running = run_swtpm(state_dir, ek_type=ek_type, ca=ca)
        try:
            _remove_eks(running.tcti, _REMOVED[ek_type])
        finally:
            running.stop()
    for leftover in ("swtpm.pid", "swtpm.log", "swtpm.err", ".lock"):
        (state_dir / leftover).unlink(missing_ok=True)


@attrs.frozen
class SwtpmImage:
    """A provisioned TPM state to copy (``STATE_FILE``) for each new instance."""

    ek_type: str
    state_dir: Path
    ca: LocalCA


def make_image(base: Path, directory: Path, ek_type: str, ca: LocalCA) -> SwtpmImage:
    """Derive the *ek_type* variant from the provisioned state in *base*, into *directory*."""
    if ek_type not in EK_TYPES:
        raise ValueError(f"ek_type must be one of {EK_TYPES}")
    shutil.copytree(base, directory)
    restrict_eks(directory, ek_type, ca)
    return SwtpmImage(ek_type, directory, ca)


# --- a swtpm kept in a directory, for operators --------------------------------------------


@attrs.frozen
class RunningSwtpm:
    """A detached swtpm found through its directory's pid file."""

    pid: int
    port: int

    @property
    def tcti(self) -> str:
        return tcti_for(self.port)


def _process_state(pid: int) -> str | None:
    """The state letter of *pid* from /proc (``Z`` for a zombie); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
    fields = stat[stat.rfind(")") + 1 :].split()
    return fields[0] if fields else "?"


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _reap(pid: int) -> None:
    """Reap *pid* if it is our own exited child (started by this process); else nothing."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    """Whether *pid* runs (a zombie does not: it only waits for a parent to reap it)."""
    if Path("/proc/self").exists():
        state = _process_state(pid)
        return state is not None and state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_INCOMPLETE = ".setup-incomplete"


class SwtpmDirectory:
    """A software TPM that lives in one directory and runs detached from its starter.

    Layout (the directory is mode 0700: it holds the local CA's signing key)::

        state/              the TPM state (swtpm --tpmstate)
        localca/            swtpm-localca: root, intermediate, signing key
        ek-ca-bundle.pem    root + intermediate, PEM: what the CA must trust
        swtpm.json          {"ekType", "port"}: written once set-up is complete
        swtpm.pid           the running swtpm's pid (only while it runs)
        swtpm.log, swtpm.err  swtpm's log and stderr
        swtpm_setup.conf, swtpm-localca.conf, swtpm-localca.options

    Set-up happens once; later starts reuse the state, so the EK stays the same.
    """

    #: Every name set-up may leave behind (a half-finished set-up is redone).
    _OWN_NAMES = frozenset(
        {
            "state",
            "localca",
            BUNDLE_FILE,
            "swtpm.json",
            "swtpm.pid",
            "swtpm.log",
            "swtpm.err",
            "swtpm.lock",
            _INCOMPLETE,
            "swtpm_setup.conf",
            "swtpm-localca.conf",
            "swtpm-localca.options",
        }
    )

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    @property
    def ca(self) -> LocalCA:
        return LocalCA(self.directory / "localca")

    @property
    def bundle(self) -> Path:
        return self.directory / BUNDLE_FILE

    @property
    def pid_file(self) -> Path:
        return self.directory / "swtpm.pid"

    @property
    def record_file(self) -> Path:
        return self.directory / "swtpm.json"

    # --- the set-up record ------------------------------------------------------

    def _record(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.record_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SwtpmError(f"cannot read {self.record_file}: {exc}") from None
        if not isinstance(data, dict) or data.get("ekType") not in EK_TYPES:
            raise SwtpmError(f"{self.record_file} is not a swtpm record")
        return data

    def _write_record(self, data: dict[str, Any]) -> None:
        temp = self.record_file.with_name(".swtpm.json.tmp")
        try:
            temp.write_text(json.dumps(data, indent=2) + "\n")
            os.replace(temp, self.record_file)
        except OSError as exc:
            raise SwtpmError(f"cannot write {self.record_file}: {exc}") from None

    def is_set_up(self) -> bool:
        return self._record() is not None

    def ek_type(self) -> str | None:
        record = self._record()
        return None if record is None else str(record["ekType"])

    def last_port(self) -> int | None:
        record = self._record()
        port = None if record is None else record.get("port")
        return port if isinstance(port, int) else None

    # --- set-up -----------------------------------------------------------------

    def _check_ours(self) -> None:
        """Refuse a directory that holds anything but a (possibly half-finished) set-up."""
        try:
            present = {p.name for p in self.directory.iterdir()}
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SwtpmError(f"cannot read {self.directory}: {exc}") from None
        foreign = sorted(present - self._OWN_NAMES)
        if not ({"swtpm.json", _INCOMPLETE} & present):
            # Without either marker, even a lone state/ or localca/ is someone else's.
            foreign += sorted(present & {"state", "localca"})
        if foreign and "swtpm.json" not in present:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise SwtpmError(
                f"{self.directory} is not empty and holds no swtpm set up by devid ({shown});"
                " pass a new or empty --dir"
            )

    def _prepare(self) -> None:
        """Create the directory (0700), or clear a half-finished set-up of ours."""
        self._check_ours()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            for path in self.directory.iterdir():
                if path.name == "swtpm.lock":
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            os.chmod(self.directory, 0o700)
            (self.directory / _INCOMPLETE).touch()
        except OSError as exc:
            raise SwtpmError(f"cannot prepare {self.directory}: {exc}") from None

    def set_up(self, ek_type: str) -> None:
        """Provision a new TPM state and local CA; keep only the *ek_type* EK(s)."""
        if ek_type not in EK_TYPES:
            raise SwtpmError(f"the EK type must be one of {', '.join(EK_TYPES)}")
        self._prepare()
        state, ca = provision(self.directory.resolve())
        restrict_eks(state, ek_type, ca)
        ca.write_bundle(self.bundle)
        self._write_record({"ekType": ek_type})
        (self.directory / _INCOMPLETE).unlink(missing_ok=True)

    # --- running ----------------------------------------------------------------

    def _read_pid(self) -> int | None:
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SwtpmError(f"cannot read {self.pid_file}: {exc}") from None
        return int(text) if text.isdigit() else None

    def _is_ours(self, pid: int) -> bool:
        """Whether *pid* is a live swtpm on this directory's state (not a recycled pid)."""
        if not _alive(pid):
            return False
        argv = _cmdline(pid)
        if argv is None:  # no /proc: trust the pid file
            return True
        return bool(argv) and Path(argv[0]).name == "swtpm" and self._state_arg() in argv

    def _state_arg(self) -> str:
        return f"dir={self.state_dir.resolve()}"

    def running(self) -> RunningSwtpm | None:
        """The swtpm running on this directory, if any (a stale pid file is removed)."""
        pid = self._read_pid()
        if pid is None:
            return None
        if not self._is_ours(pid):
            self.pid_file.unlink(missing_ok=True)
            return None
        return RunningSwtpm(pid, self.last_port() or DEFAULT_PORT)

    @contextlib.contextmanager
    def locked(self, *, create: bool = True) -> Iterator[bool]:
        """Serialise start and stop on this directory (an flock on ``swtpm.lock``).

        Yields whether the directory exists; with *create* (for start) it is
        created, mode 0700, unless it holds files of something else.
        """
        if not create and not self.directory.is_dir():
            yield False
            return
        self._check_ours()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle = (self.directory / "swtpm.lock").open("a")
        except OSError as exc:
            raise SwtpmError(f"cannot use {self.directory}: {exc}") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield True

    def start(self, port: int = DEFAULT_PORT) -> RunningSwtpm:
        """Start the (set-up) swtpm detached on 127.0.0.1:*port* and *port*+1."""
        require_tools()
        if not 1 <= port <= 65534:
            raise SwtpmError(f"--port must be between 1 and 65534, not {port}")
        if not self.is_set_up():
            raise SwtpmError(f"no swtpm is set up in {self.directory}")
        already = self.running()
        if already is not None:
            raise SwtpmError(f"swtpm is already running (pid {already.pid}) on {already.tcti}")
        busy = [p for p in (port, port + 1) if not port_free(p)]
        if busy:
            raise SwtpmError(
                f"port {busy[0]} is in use on {HOST} (swtpm needs {port} for commands and"
                f" {port + 1} for control); pick another with --port"
            )
        process = launch(
            self.state_dir.resolve(),  # absolute: the pid check matches it in the command line
            port,
            log_file=self.directory / "swtpm.log",
            errors_file=self.directory / "swtpm.err",
            detach=True,
        )
        try:
            self.pid_file.write_text(f"{process.pid}\n")
            record = self._record() or {}
            self._write_record({**record, "port": port})
        except (OSError, SwtpmError) as exc:
            stop_process(process)
            raise SwtpmError(
                f"cannot record the running swtpm in {self.directory}: {exc}"
            ) from None
        # swtpm must outlive us, unreaped: mark the Popen as finished so that its
        # finaliser neither warns "subprocess is still running" nor tracks it.
        process.returncode = 0
        return RunningSwtpm(process.pid, port)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Stop the swtpm running on this directory; its pid, or None if none ran.

        SIGTERM first, SIGKILL after *timeout*. swtpm keeps its state in files
        after every change, so either way the TPM keeps its EK and NV contents.
        """
        running = self.running()
        if running is None:
            return None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(running.pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                _reap(running.pid)
                if not _alive(running.pid):
                    self.pid_file.unlink(missing_ok=True)
                    return running.pid
                time.sleep(0.01)
        raise SwtpmError(f"swtpm (pid {running.pid}) did not stop, not even on SIGKILL")
