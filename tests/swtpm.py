"""Real software TPMs (swtpm) for tests, with EK certificates from a private local CA.

Use the fixtures from any test module with::

    if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
        from tests.swtpm import Swtpm

    pytest_plugins = ["tests.swtpm"]

    def test_something(swtpm: Swtpm) -> None:  # runs with an RSA EK, then an ECC one
        with TPM(swtpm.tcti) as tpm: ...

Fixtures: ``swtpm`` (parametrized over the RSA-EK and ECC-EK variants),
``swtpm_rsa``, ``swtpm_ecc``, ``swtpm_both``, ``swtpm_no_ek_cert`` (one running
instance each), ``swtpm_factory`` (start more), and the session-wide
``swtpm_images`` / ``swtpm_ek_ca`` (the local CA that issued every EK
certificate; a verifier needs its root *and* intermediate, e.g.
``swtpm_ek_ca.bundle``, because the TPM holds only the leaf).

How the variants are made: ``swtpm_setup`` always creates both an RSA-2048 EK
(certificate at NV 0x01c00002) and an ECC P-384 EK (0x01c00016), plus a
platform certificate. One setup runs per test session (about 1-1.7 s); each
variant copies that state and undefines the other EK certificate index(es).
Each test then gets a fresh copy of the variant's state (a 6 kB file) and its
own swtpm process on a free TCP port pair (P for commands, P+1 for control).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

EK_TYPES = ("rsa", "ecc", "both", "none")
RSA_EK_CERT_INDEX = 0x01C00002
ECC_EK_CERT_INDEX = 0x01C00016
RSA_EK_PERSISTENT = 0x81010001
ECC_EK_PERSISTENT = 0x81010016
STATE_FILE = "tpm2-00.permall"
START_TIMEOUT = 10.0


class SwtpmError(RuntimeError):
    pass


def swtpm_available() -> bool:
    return all(shutil.which(tool) for tool in ("swtpm", "swtpm_setup", "swtpm_localca"))


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
        path = self.directory / "ek-ca-bundle.pem"
        if not path.exists():
            path.write_bytes(self.root.read_bytes() + self.intermediate.read_bytes())
        return path


@attrs.frozen
class SwtpmImage:
    """A provisioned TPM state to copy for each test."""

    ek_type: str
    state_dir: Path
    ca: LocalCA


@attrs.define
class Swtpm:
    """A running swtpm (our child process), stopped by :meth:`stop` (the fixtures do it)."""

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
        return f"swtpm:host=127.0.0.1,port={self.port}"

    @property
    def ek_root(self) -> Path:
        return self.ca.root

    def stop(self) -> None:
        _stop(self.process)

    def restart(self) -> None:
        """Power-cycle: stop, then start again on the same state (on a new port pair)."""
        self.stop()
        fresh = run_swtpm(self.state_dir, ek_type=self.ek_type, ca=self.ca)
        self.port, self.process = fresh.port, fresh.process


# --- processes and ports --------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A port P with P and P+1 both free on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 65535 and _port_free(port + 1):
            return port
    raise SwtpmError("no free port pair found")


def _stop(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate swtpm and reap it (no zombies pile up over a test session)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SwtpmError(f"swtpm exited during start-up (status {process.returncode})")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.01)
    raise SwtpmError(f"swtpm did not answer on port {port}")


def run_swtpm(state_dir: Path, *, ek_type: str, ca: LocalCA) -> Swtpm:
    """Start swtpm on *state_dir* and wait until it answers on its command port.

    swtpm runs as our child rather than with ``--daemon``: a daemon is re-parented
    and, where nothing reaps orphans (containers), each one stays a zombie. It
    still writes ``swtpm.pid`` into the state directory.
    """
    last_error = ""
    for _ in range(5):
        port = free_port_pair()
        command = [
            "swtpm",
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={state_dir}",
            "--server",
            f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl",
            f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
            "--flags",
            "not-need-init,startup-clear",
            "--pid",
            f"file={state_dir / 'swtpm.pid'}",
            "--log",
            f"file={state_dir / 'swtpm.log'}",
        ]
        errors = state_dir / "swtpm.err"
        with errors.open("wb") as sink:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink
            )
        try:
            _wait_listening(port, process)
        except SwtpmError as exc:
            _stop(process)
            last_error = f"{exc}: {errors.read_text(errors='replace').strip()}"
            continue  # most likely a port taken meanwhile: try another pair
        return Swtpm(ek_type, port, state_dir, process, ca)
    raise SwtpmError(f"swtpm did not start: {last_error}")


# --- provisioning -----------------------------------------------------------------------


def provision(directory: Path) -> tuple[Path, LocalCA]:
    """Run swtpm_setup once with a private swtpm-localca: a TPM state with RSA and ECC
    EK certificates and a platform certificate. Returns (state dir, local CA)."""
    ca = LocalCA(directory / "localca")
    state = directory / "state"
    ca.directory.mkdir(parents=True)
    state.mkdir()
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
        "create_certs_tool = /usr/bin/swtpm_localca\n"
        f"create_certs_tool_config = {localca_conf}\n"
        f"create_certs_tool_options = {options}\n"
        "active_pcr_banks = sha256\n"
    )
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
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SwtpmError(f"swtpm_setup failed: {(result.stderr or result.stdout).strip()}")
    return state, ca


#: What each variant removes: (EK certificate NV index, persistent EK handle) pairs.
_REMOVED = {
    "rsa": [(ECC_EK_CERT_INDEX, ECC_EK_PERSISTENT)],
    "ecc": [(RSA_EK_CERT_INDEX, RSA_EK_PERSISTENT)],
    "both": [],
    "none": [(RSA_EK_CERT_INDEX, RSA_EK_PERSISTENT), (ECC_EK_CERT_INDEX, ECC_EK_PERSISTENT)],
}


def _remove_eks(tcti: str, removals: list[tuple[int, int]]) -> None:
    """Undefine EK certificate indices (platform auth) and evict the persistent EKs."""
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import ESYS_TR, TPM2_SU

    with ESAPI(tcti) as esapi:
        for nv_index, persistent in removals:
            index = esapi.tr_from_tpmpublic(nv_index)
            esapi.nv_undefine_space(index, ESYS_TR.PLATFORM)
            key = esapi.tr_from_tpmpublic(persistent)
            esapi.evict_control(ESYS_TR.OWNER, key, persistent)
        esapi.shutdown(TPM2_SU.CLEAR)


def make_image(base: Path, directory: Path, ek_type: str, ca: LocalCA) -> SwtpmImage:
    """Derive the *ek_type* variant from the provisioned state in *base*."""
    if ek_type not in EK_TYPES:
        raise ValueError(f"ek_type must be one of {EK_TYPES}")
    shutil.copytree(base, directory)
    if _REMOVED[ek_type]:
        running = run_swtpm(directory, ek_type=ek_type, ca=ca)
        try:
            _remove_eks(running.tcti, _REMOVED[ek_type])
        finally:
            running.stop()
    for leftover in ("swtpm.pid", "swtpm.log", "swtpm.err", ".lock"):
        (directory / leftover).unlink(missing_ok=True)
    return SwtpmImage(ek_type, directory, ca)


class SwtpmImages:
    """Provisioned states, made on first use and cached for the test session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._base: tuple[Path, LocalCA] | None = None
        self._images: dict[str, SwtpmImage] = {}

    @property
    def ca(self) -> LocalCA:
        return self._provisioned()[1]

    def _provisioned(self) -> tuple[Path, LocalCA]:
        if self._base is None:
            self._base = provision(self.directory / "base")
        return self._base

    def get(self, ek_type: str) -> SwtpmImage:
        if ek_type not in self._images:
            base, ca = self._provisioned()
            self._images[ek_type] = make_image(base, self.directory / ek_type, ek_type, ca)
        return self._images[ek_type]

    def start(self, ek_type: str, workdir: Path) -> Swtpm:
        """A new swtpm on a private copy of the *ek_type* state in *workdir*."""
        image = self.get(ek_type)
        workdir.mkdir(parents=True, exist_ok=True)
        state = Path(tempfile.mkdtemp(prefix=f"swtpm-{ek_type}-", dir=workdir))
        shutil.copy2(image.state_dir / STATE_FILE, state / STATE_FILE)
        return run_swtpm(state, ek_type=ek_type, ca=image.ca)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def swtpm_images(tmp_path_factory: pytest.TempPathFactory) -> SwtpmImages:
    if not swtpm_available():
        pytest.skip("swtpm, swtpm_setup and swtpm_localca are needed")
    return SwtpmImages(tmp_path_factory.mktemp("swtpm-images"))


@pytest.fixture(scope="session")
def swtpm_ek_ca(swtpm_images: SwtpmImages) -> LocalCA:
    """The local CA behind every swtpm EK certificate (trust ``.bundle`` as EK roots)."""
    return swtpm_images.ca


SwtpmFactory = Callable[[str], Swtpm]


@pytest.fixture
def swtpm_factory(swtpm_images: SwtpmImages, tmp_path: Path) -> Iterator[SwtpmFactory]:
    """Start swtpm instances of a given EK type ("rsa", "ecc", "both"); all stop at teardown."""
    started: list[Swtpm] = []

    def start(ek_type: str) -> Swtpm:
        instance = swtpm_images.start(ek_type, tmp_path / "swtpm")
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture(params=["rsa", "ecc"])
def swtpm(request: pytest.FixtureRequest, swtpm_factory: SwtpmFactory) -> Swtpm:
    """A running swtpm with an RSA-2048 EK certificate, then one with an ECC P-384 one."""
    return swtpm_factory(request.param)


@pytest.fixture
def swtpm_rsa(swtpm_factory: SwtpmFactory) -> Swtpm:
    return swtpm_factory("rsa")


@pytest.fixture
def swtpm_ecc(swtpm_factory: SwtpmFactory) -> Swtpm:
    return swtpm_factory("ecc")


@pytest.fixture
def swtpm_both(swtpm_factory: SwtpmFactory) -> Swtpm:
    """swtpm as swtpm_setup leaves it: RSA and ECC EK certificates."""
    return swtpm_factory("both")


@pytest.fixture
def swtpm_no_ek_cert(swtpm_factory: SwtpmFactory) -> Swtpm:
    """A TPM without any EK certificate in NV (the EKs still exist: they are derived)."""
    return swtpm_factory("none")
