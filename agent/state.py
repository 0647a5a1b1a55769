"""The agent's state directory: what a device keeps between runs.

Layout (the directory is mode 0700, every file 0600)::

    ak.pub        TPM2B_PUBLIC of the attestation key
    ak.priv       TPM2B_PRIVATE of the attestation key: wrapped by the TPM's storage
                  root key, useless outside this TPM (so no clear private key is ever
                  written)
    ak.crt        the AK certificate (PEM)
    ak-chain.pem  the AK certificate followed by the Attestation CA certificate (PEM)
    ek.json       which EK the AK was attested with: its URN and TCG template
    agent.pid     the pid of the running ``devid agent run`` (``devid agent poke`` reads it)
    delivered.json  the files delivered to --out per account, to remove those of an account
                  no longer assigned to the device

Files are replaced atomically, so a crash leaves either the old or the new state.
This module needs no TPM library, so the CLI can load it (and report errors)
where tpm2-pytss is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600

AK_PUBLIC = "ak.pub"
AK_PRIVATE = "ak.priv"
AK_CERTIFICATE = "ak.crt"
AK_CHAIN = "ak-chain.pem"
EK_RECORD = "ek.json"
PID_FILE = "agent.pid"
DELIVERED = "delivered.json"


class AgentError(Exception):
    """Something the device agent cannot do; the message says why, in one line."""


@attrs.frozen
class EKRecord:
    """The EK an AK was attested with (the AK is only useful together with it)."""

    urn: str
    template: str  # TCG EK template name, for example "L-1" or "H-3"
    nv_index: int | None = None  # where its certificate was read, if it had one

    def to_json(self) -> dict[str, Any]:
        return {"urn": self.urn, "template": self.template, "nvIndex": self.nv_index}

    @classmethod
    def from_json(cls, data: Any) -> EKRecord:
        if not isinstance(data, dict) or not isinstance(data.get("urn"), str):
            raise AgentError("ek.json is not an EK record")
        template = data.get("template")
        nv_index = data.get("nvIndex")
        if not isinstance(template, str) or not (nv_index is None or isinstance(nv_index, int)):
            raise AgentError("ek.json is not an EK record")
        return cls(data["urn"], template, nv_index)


@attrs.frozen
class WrappedKey:
    """A key as the TPM wrapped it: loadable again under the same TPM's storage root key."""

    public: bytes  # TPM2B_PUBLIC
    private: bytes  # TPM2B_PRIVATE


def _write_atomic(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


class AgentState:
    """The state directory, created 0700 on first use."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def ensure(self) -> AgentState:
        """Create the directory (0700) if needed; refuse one that others can read."""
        try:
            self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
            info = self.directory.stat()
        except OSError as exc:
            raise AgentError(f"cannot create the state directory {self.directory}: {exc}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise AgentError(f"{self.directory} is not a directory")
        if stat.S_IMODE(info.st_mode) & 0o077:
            if info.st_uid != os.getuid():
                raise AgentError(
                    f"the state directory {self.directory} is accessible to others "
                    "and not ours to fix; make it mode 0700"
                )
            os.chmod(self.directory, DIRECTORY_MODE)
        return self

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def chain_path(self) -> Path:
        return self.path(AK_CHAIN)

    @property
    def certificate_path(self) -> Path:
        return self.path(AK_CERTIFICATE)

    def _read(self, name: str) -> bytes | None:
        try:
            return self.path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AgentError(f"cannot read {self.path(name)}: {exc}") from None

    def _write(self, name: str, data: bytes) -> None:
        self.ensure()
        try:
            _write_atomic(self.path(name), data)
        except OSError as exc:
            raise AgentError(f"cannot write {self.path(name)}: {exc}") from None

    # --- the attestation key -------------------------------------------------

    def save_ak(self, ak: WrappedKey) -> None:
        self._write(AK_PUBLIC, ak.public)
        self._write(AK_PRIVATE, ak.private)

    def load_ak(self) -> WrappedKey | None:
        public, private = self._read(AK_PUBLIC), self._read(AK_PRIVATE)
        if public is None and private is None:
            return None
        if public is None or private is None:
            raise AgentError(f"{self.directory} holds only half of the AK (ak.pub / ak.priv)")
        return WrappedKey(public, private)

    # --- the EK ----------------------------------------------------------------

    def save_ek(self, record: EKRecord) -> None:
        self._write(EK_RECORD, (json.dumps(record.to_json(), indent=2) + "\n").encode())

    def load_ek(self) -> EKRecord | None:
        raw = self._read(EK_RECORD)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            raise AgentError(f"{self.path(EK_RECORD)} is not JSON") from None
        return EKRecord.from_json(data)

    # --- the AK certificate and its chain -------------------------------------

    def save_chain(self, chain: Sequence[x509.Certificate]) -> None:
        """Keep the AK certificate (ak.crt) and the whole chain (ak-chain.pem)."""
        if not chain:
            raise AgentError("an empty certificate chain cannot be saved")
        pems = [c.public_bytes(Encoding.PEM) for c in chain]
        self._write(AK_CHAIN, b"".join(pems))
        self._write(AK_CERTIFICATE, pems[0])

    def load_chain(self) -> list[x509.Certificate] | None:
        raw = self._read(AK_CHAIN)
        if raw is None:
            return None
        try:
            return x509.load_pem_x509_certificates(raw)
        except ValueError:
            raise AgentError(f"{self.chain_path} holds no readable certificates") from None

    # --- the running agent -----------------------------------------------------

    @property
    def pid_path(self) -> Path:
        return self.path(PID_FILE)

    def write_pid(self) -> None:
        """Record this process as the running agent."""
        self._write(PID_FILE, f"{os.getpid()}\n".encode())

    def remove_pid(self) -> None:
        """Forget the running agent, if the pid file is still this process's."""
        raw = self._read(PID_FILE)
        if raw is not None and raw.strip() == str(os.getpid()).encode():
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()

    def running_pid(self) -> int:
        """The pid of the agent running on this state directory; AgentError if none."""
        raw = self._read(PID_FILE)
        if raw is None:
            raise AgentError(
                f"no agent is running on {self.directory} (no {PID_FILE}): start it with"
                " `devid agent run`, or pass the --state DIR it runs with"
            )
        try:
            pid = int(raw.strip())
        except ValueError:
            raise AgentError(f"{self.pid_path} holds no pid") from None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise AgentError(
                f"the agent (pid {pid}, from {self.pid_path}) is not running any more"
            ) from None
        except PermissionError:
            pass  # it runs, as another user: signalling it will say so
        return pid

    def load_delivered(self) -> dict[str, list[Path]]:
        """The files delivered to --out, by account name."""
        raw = self._read(DELIVERED)
        if raw is None:
            return {}
        try:
            data = json.loads(raw)
            return {str(k): [Path(str(f)) for f in v] for k, v in dict(data).items()}
        except (ValueError, TypeError, AttributeError):
            return {}  # unreadable: start over (the next deliveries write it again)

    def save_delivered(self, delivered: dict[str, list[Path]]) -> None:
        data = {name: [str(f) for f in files] for name, files in sorted(delivered.items())}
        self._write(DELIVERED, json.dumps(data, indent=2).encode())
