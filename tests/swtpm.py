"""Real software TPMs (swtpm) for tests, with EK certificates from a private local CA.

Use the fixtures from any test module with::

    if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
        from tests.swtpm import Swtpm

    pytest_plugins = ["tests.swtpm"]

    def test_something(swtpm: Swtpm) -> None:  # runs with an RSA EK, then an ECC one
        with TPM(swtpm.tcti) as tpm: ...

Fixtures: ``swtpm`` (parametrized over the RSA-EK and ECC-EK variants),
``swtpm_rsa``, ``swtpm_ecc``, ``swtpm_both``, ``swtpm_no_ek_cert`` (one running
instance each), ``swtpm_factory`` (start more), ``swtpm_cli`` (runs
``devid agent swtpm ...`` by subprocess and stops every swtpm it started), and the
session-wide
``swtpm_images`` / ``swtpm_ek_ca`` (the local CA that issued every EK
certificate; a verifier needs its root *and* intermediate, e.g.
``swtpm_ek_ca.bundle``, because the TPM holds only the leaf).

How the variants are made: ``swtpm_setup`` always creates both an RSA-2048 EK
(certificate at NV 0x01c00002) and an ECC P-384 EK (0x01c00016), plus a
platform certificate. One setup runs per test session (about 1-1.7 s); each
variant copies that state and undefines the other EK certificate index(es).
Each test then gets a fresh copy of the variant's state (a 6 kB file) and its
own swtpm process on a free TCP port pair (P for commands, P+1 for control).

The machinery (provisioning, the local CA, starting and stopping swtpm) is the
library :mod:`agent.swtpm`; this module adds the per-session cache and the fixtures,
and re-exports the helper classes so ``from tests.swtpm import LocalCA, Swtpm`` works.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from agent.swtpm import (
    EK_TYPES,
    STATE_FILE,
    LocalCA,
    Swtpm,
    SwtpmError,
    SwtpmImage,
    free_port_pair,
    make_image,
    provision,
    run_swtpm,
    swtpm_available,
)
from hosts.testing.servers import clean_env, run_devid

__all__ = [
    "EK_TYPES",
    "LocalCA",
    "Swtpm",
    "SwtpmCLI",
    "SwtpmError",
    "SwtpmFactory",
    "SwtpmImage",
    "SwtpmImages",
    "free_port_pair",
    "make_image",
    "provision",
    "run_swtpm",
    "swtpm_available",
]


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


# --- `devid agent swtpm` by subprocess --------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36


def _set_subreaper(on: bool) -> bool:
    """Adopt orphaned descendants (Linux): the detached swtpm a ``devid agent swtpm
    start`` leaves behind becomes our child, so it can be reaped after it stops
    instead of staying a zombie where init does not reap (containers)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


@attrs.define
class SwtpmCLI:
    """Runs ``devid agent swtpm ...`` (and any other ``devid`` command) as an operator would;
    remembers every directory it started a swtpm on, so teardown can stop them all."""

    env: dict[str, str]
    directories: list[Path] = attrs.field(factory=list)

    def devid(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = run_devid(*args, env=self.env, check=False, timeout=120)
        if check:
            assert result.returncode == 0, (result.args, result.stdout, result.stderr)
        return result

    def start(
        self, directory: Path, port: int | None = None, *extra: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``devid agent swtpm start --dir DIRECTORY --port PORT`` (a free port pair if None)."""
        if directory not in self.directories:
            self.directories.append(directory)
        port = port if port is not None else free_port_pair()
        result = self.devid(
            "agent", "swtpm", "start", "--dir", directory, "--port", str(port), *extra, check=check
        )
        self.reap()  # swtpm_setup's own swtpm, on first use
        return result

    def stop(self, directory: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = self.devid("agent", "swtpm", "stop", "--dir", directory, check=check)
        self.reap()
        return result

    def status(self, directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.devid("agent", "swtpm", "status", "--dir", directory, *extra, check=False)

    def reap(self) -> None:
        """Collect the stopped swtpm processes we adopted (see :func:`reap_swtpm_zombies`)."""
        reap_swtpm_zombies()


def reap_swtpm_zombies() -> None:
    """Reap our zombie children named swtpm: the detached swtpm of a stopped ``devid agent
    swtpm start``, and the swtpm that swtpm_setup leaves orphaned, both adopted by us as
    subreaper."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.find("(") + 1 : text.rfind(")")]
        fields = text[text.rfind(")") + 1 :].split()
        if comm == "swtpm" and len(fields) > 1 and fields[0] == "Z" and fields[1] == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(stat.parent.name), os.WNOHANG)


@pytest.fixture
def swtpm_cli() -> Iterator[SwtpmCLI]:
    """Run ``devid agent swtpm`` by subprocess; every swtpm started through it is stopped
    at teardown (and reaped, where the platform lets us adopt it)."""
    if not swtpm_available():
        pytest.skip("swtpm, swtpm_setup and swtpm_localca are needed")
    subreaper = _set_subreaper(True)
    cli = SwtpmCLI(clean_env())
    try:
        yield cli
    finally:
        try:
            for directory in cli.directories:
                cli.stop(directory, check=False)
        finally:
            if subreaper:
                reap_swtpm_zombies()
                _set_subreaper(False)
