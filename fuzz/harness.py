"""What every target shares: the one rule (only devid's protocol errors, answered with
a 4xx, may come out), the logging trap, and the fixed facts (the time, where the
trusted roots are) the targets verify against."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine.errors import ProtocolError

if TYPE_CHECKING:
    from engine.pipeline import Issuer

FUZZ_DIR = Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"
FIXTURES_DIR = FUZZ_DIR / "fixtures"

#: The instant every target verifies at; the seed chains are valid then.
NOW = datetime(2025, 6, 1, tzinfo=UTC)

T = TypeVar("T")


class UnexpectedLog(AssertionError):
    """devid logged an error while handling the input: a swallowed crash is still a crash."""


class BadAnswer(AssertionError):
    """A protocol error the hosts could not send as a 4xx in the protocol's own form."""


class _Trap(logging.Handler):
    """Collects error records of devid's loggers while a target runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.depth = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.depth:
            self.records.append(record)


_TRAP = _Trap()
logging.getLogger("devid").addHandler(_TRAP)


def attempt(parse: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run *parse*; a refusal the hosts answer with a 4xx (a :class:`ProtocolError`)
    gives None. Anything else propagates, and so does an error devid logged while
    handling the input (``plugins.attestation.guarded`` turns an unexpected exception
    into a 4xx but logs it as the bug it is)."""
    if not _TRAP.depth:
        _TRAP.records.clear()
    _TRAP.depth += 1
    try:
        return parse(*args, **kwargs)
    except ProtocolError as exc:
        check_answer(exc)
        return None
    finally:
        _TRAP.depth -= 1
        if _TRAP.records:
            record = _TRAP.records.pop(0)
            _TRAP.records.clear()
            detail = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                detail += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            raise UnexpectedLog(f"{record.name} logged an error: {detail}")


def check_answer(exc: ProtocolError) -> None:
    """The refusal is a 4xx whose body (JSON or an ACME problem document) can be written."""
    if not 400 <= exc.http_status < 500:
        raise BadAnswer(f"{type(exc).__name__} answers {exc.http_status}: {exc.detail}")
    try:
        json.dumps(exc.to_json())
    except (TypeError, ValueError) as error:
        raise BadAnswer(f"{type(exc).__name__} cannot be sent as JSON: {error}") from None


def split(data: bytes, count: int) -> list[bytes]:
    """*count* parts, each but the last after a two-byte big-endian length (missing
    parts are empty, the last takes what is left): how targets whose input is several
    binary values let the fuzzer change each one directly."""
    parts: list[bytes] = []
    for index in range(count):
        if index == count - 1:
            parts.append(data)
            break
        size = int.from_bytes(data[:2], "big")
        parts.append(data[2 : 2 + size])
        data = data[2 + size :]
    return parts


def join(*parts: bytes) -> bytes:
    """The inverse of :func:`split` (used to make seeds)."""
    return b"".join(len(p).to_bytes(2, "big") + p for p in parts[:-1]) + parts[-1]


def corpus(target: str) -> Iterator[Path]:
    """The files of *target*'s corpus, in a stable order."""
    directory = CORPUS_DIR / target
    yield from sorted(p for p in directory.iterdir() if p.is_file())


def text(data: bytes) -> str:
    """Bytes as the str a JSON string could carry (invalid UTF-8 becomes U+FFFD)."""
    return data.decode("utf-8", "replace")


def issuing_ca(seed: int, name: str) -> Issuer:
    """A self-signed P-256 issuing CA derived from *seed* (the same for every run), valid a
    day before :data:`NOW` to a year after it, as an ``engine.pipeline.Issuer`` named
    ``tls``: what the targets that run the signing pipeline sign with."""
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from engine.pipeline import Issuer
    from engine.signer import SoftwareSigner

    key = ec.derive_private_key(seed, ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Issuer(name="tls", certificate=certificate, signer=SoftwareSigner(key))
