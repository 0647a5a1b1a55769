"""``devid backup`` and ``devid restore``: a data directory to a checked copy and back.

A backup is a directory, or the same tree in one ``.tar`` file when OUT's name ends in
``.tar``. It holds:

- ``manifest.json``: the devid and schema versions, when it was taken, and each file's
  relative path, size and SHA-256;
- ``SHA256SUMS``: the same checksums in the format of ``sha256sum -c``;
- ``data/``: the data directory's files at their relative paths: ``devid.toml``, the
  certificates (``certs/``), the keys and the admin token as they are on disk (the
  CA keys encrypted), EK roots and anything else an operator put there, and the
  database as one consistent copy taken through SQLite's online backup API while the
  server goes on issuing.

Left out: the database's live files (``-wal``, ``-shm``, the writer lock), which the
copy replaces; ``tls/``, the server's own short-lived certificate, issued again at each
start; and ``secrets/password``, the password ``devid init`` may have generated: the
password must be kept apart from the backup, or the backup's encrypted keys protect
nothing. Every file is written mode 0600 and every directory 0700.

A restore checks everything before it writes the data directory: the manifest and
every checksum, the database (``PRAGMA integrity_check``, a schema version this devid
opens or upgrades), the root and intermediate certificates (they parse and chain), and
with the password the encrypted keys (they decrypt and match their certificates). It
builds the new directory beside the target and renames it into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from engine.errors import ConfigurationError
from hosts.store import inspect_database, snapshot

from .config import CONFIG_NAME, load_config
from .pki import load_certificate, load_private_key
from .secrets import GENERATED_PASSWORD

MANIFEST = "manifest.json"
CHECKSUMS = "SHA256SUMS"
#: The folder of a backup that holds the data directory's files.
DATA = "data"
FORMAT = "devid-backup"
FORMAT_VERSION = 1
#: Suffixes of the files SQLite and devid keep beside a live database.
_LIVE_SUFFIXES = ("-wal", "-shm", "-journal", "-writer.lock")
#: Folders of the data directory that are not backed up (see the module docstring).
_SKIPPED_DIRS = ("tls",)
_FILE_MODE = 0o600
_DIR_MODE = 0o700


def devid_version() -> str:
    try:
        return metadata.version("devid")
    except metadata.PackageNotFoundError:
        return "unknown"


def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


def _sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _mkdirs(root: Path, relative: PurePosixPath) -> Path:
    """root/relative's folders, each 0700; the full path."""
    current = root
    for part in relative.parts[:-1]:
        current = current / part
        if not current.is_dir():
            current.mkdir(mode=_DIR_MODE)
        os.chmod(current, _DIR_MODE)
    return root / relative


def _copy_private(source: Path, target: Path) -> tuple[int, str]:
    """Copy *source* to the new file *target* (mode 0600); its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    with os.fdopen(fd, "wb") as out, source.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(target, _FILE_MODE)
    return size, digest.hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(path, _FILE_MODE)


def _inside(path: Path, directory: Path) -> PurePosixPath | None:
    """*path* relative to *directory*, if it lies inside it."""
    try:
        return PurePosixPath(path.resolve().relative_to(directory.resolve()).as_posix())
    except ValueError:
        return None


def _sync_directory(directory: Path) -> None:
    """Make a rename inside *directory* durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- backup ------------------------------------------------------------------------------


@attrs.frozen
class BackupResult:
    out: Path
    archive: bool
    files: int
    size: int
    schema_version: int
    created_at: datetime
    #: Files of the data directory that were not copied, with why (symbolic links, ...).
    skipped: tuple[str, ...]


def _data_files(data_dir: Path, database: PurePosixPath) -> Iterator[tuple[PurePosixPath, str]]:
    """Every file of *data_dir* but the database and what is never backed up: its
    relative path and "" if it is copied, "/" for a folder, else why it is not."""
    live = {database.name + suffix for suffix in _LIVE_SUFFIXES}
    for folder, dirs, files in os.walk(data_dir):
        here = Path(folder)
        relative_dir = PurePosixPath(here.relative_to(data_dir).as_posix())
        if relative_dir == PurePosixPath("."):
            dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS]
        for name in sorted(d for d in dirs if (here / d).is_symlink()):
            yield relative_dir / name, "a symbolic link, not copied"
        dirs[:] = sorted(d for d in dirs if not (here / d).is_symlink())
        for name in dirs:
            yield relative_dir / name, "/"
        for name in sorted(files):
            relative = relative_dir / name  # PurePosixPath(".") / name is name
            path = here / name
            if relative == database or relative == PurePosixPath(GENERATED_PASSWORD.as_posix()):
                continue
            if relative.parent == database.parent and name in live:
                continue
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                yield relative, "a symbolic link, not copied"
            elif not stat.S_ISREG(mode):
                yield relative, "not a regular file, not copied"
            else:
                yield relative, ""


def _absolute_paths(data_dir: Path) -> Iterator[str]:
    """The paths of the CA's files and database that devid.toml gives as absolute."""
    raw = tomllib.loads((data_dir / CONFIG_NAME).read_text())
    ca = raw.get("ca", {})
    tables = [ca.get("root", {}), *dict(ca.get("intermediates", {})).values()]
    values = [
        table.get(key)
        for table in tables
        if isinstance(table, dict)
        for key in ("certificate", "key")
    ]
    values.append(raw.get("store", {}).get("path"))
    yield from (v for v in values if isinstance(v, str) and Path(v).is_absolute())


def backup(
    data_dir: Path, out: Path, *, force: bool = False, now: datetime | None = None
) -> BackupResult:
    """Back up *data_dir* into *out* (a directory, or a tar archive if its name ends in
    ``.tar``) while the CA may be running. Refuses an existing *out* unless *force*."""
    now = now or datetime.now(UTC)
    config = load_config(data_dir)  # a data directory of a CA, and where its database is
    absolute = next(_absolute_paths(data_dir), None)
    if absolute is not None:
        raise ConfigurationError(
            f"{data_dir / CONFIG_NAME} names {absolute} by an absolute path; make it relative"
            " to the data directory, so that a backup can be restored into another one"
        )
    database = _inside(config.store.path, data_dir)
    if database is None:
        raise ConfigurationError(
            f"the database {config.store.path} is outside {data_dir}; devid backup copies"
            " a data directory that holds its database"
        )
    for files in (config.root, *config.issuers.values()):
        for path in (files.certificate, files.key):
            if _inside(path, data_dir) is None:
                raise ConfigurationError(
                    f"{path} is outside {data_dir}; devid backup copies only the data directory"
                )
    if _inside(out, data_dir) is not None:
        raise ConfigurationError(f"{out} is inside the data directory {data_dir}; choose another")
    if out.exists() and not force:
        raise ConfigurationError(f"{out} exists; choose a new name, or pass --force to replace it")
    archive = out.name.endswith(".tar")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(staging, _DIR_MODE)
        data = staging / DATA
        data.mkdir(mode=_DIR_MODE)
        entries: list[dict[str, Any]] = []
        # The database first: the moment of its copy is the moment of the backup.
        target = _mkdirs(data, database)
        schema_version = snapshot(config.store.path, target)
        size, digest = _sha256(target)
        entries.append({"path": str(database), "size": size, "sha256": digest})
        skipped: list[str] = []
        directories: list[str] = []
        for relative, why in _data_files(data_dir, database):
            if why == "/":
                directories.append(str(relative))
                continue
            if why:
                skipped.append(f"{relative}: {why}")
                continue
            size, digest = _copy_private(data_dir / relative, _mkdirs(data, relative))
            entries.append({"path": str(relative), "size": size, "sha256": digest})
        entries.sort(key=lambda entry: str(entry["path"]))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "devid_version": devid_version(),
            "schema_version": schema_version,
            "created_at": now.isoformat(),
            "data_dir": str(data_dir.resolve()),
            "database": str(database),
            "directories": directories,
            "files": entries,
        }
        _write_private(staging / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _write_private(
            staging / CHECKSUMS,
            "".join(f"{e['sha256']}  {DATA}/{e['path']}\n" for e in entries).encode(),
        )
        if archive:
            _publish_archive(staging, out, force=force)
        else:
            _publish(staging, out, force=force)
    finally:
        if staging.exists():
            _remove(staging)
    return BackupResult(
        out=out,
        archive=archive,
        files=len(entries),
        size=sum(int(e["size"]) for e in entries),
        schema_version=schema_version,
        created_at=now,
        skipped=tuple(skipped),
    )


def _publish(staging: Path, out: Path, *, force: bool) -> None:
    old: Path | None = None
    if out.exists() or out.is_symlink():
        if not force:
            raise ConfigurationError(f"{out} exists; pass --force to replace it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
    os.rename(staging, out)
    _sync_directory(out.parent)
    if old is not None:
        _remove(old)


def _publish_archive(staging: Path, out: Path, *, force: bool) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    partial = Path(name)
    try:
        os.chmod(partial, _FILE_MODE)

        def owned_by_nobody(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = _DIR_MODE if info.isdir() else _FILE_MODE
            return info

        with tarfile.open(partial, "w") as tar:
            for entry in sorted(staging.iterdir()):
                tar.add(entry, arcname=entry.name, filter=owned_by_nobody)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        if (out.exists() or out.is_symlink()) and not force:
            raise ConfigurationError(f"{out} exists; pass --force to replace it")
        if out.is_dir() and not out.is_symlink():
            _remove(out)
        os.replace(partial, out)
        _sync_directory(out.parent)
    finally:
        partial.unlink(missing_ok=True)


# --- restore -----------------------------------------------------------------------------


@attrs.frozen
class RestoreResult:
    data_dir: Path
    created_at: str
    devid_version: str
    schema_version: int
    files: int
    counts: dict[str, int]
    #: True if the keys were decrypted with the password and matched their certificates.
    keys_checked: bool
    #: Where the data directory that was there before now is (``--force``), if any.
    previous: Path | None


def _fail(message: str) -> ConfigurationError:
    return ConfigurationError(f"backup refused: {message}")


def _read_manifest(source: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((source / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise _fail(f"{source} has no {MANIFEST}; it is not a devid backup") from None
    except ValueError as exc:
        raise _fail(f"{source / MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _fail(f"{source / MANIFEST} is not the manifest of a devid backup")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _fail(
            f"{source / MANIFEST} has format version {manifest.get('format_version')!r};"
            f" this devid reads version {FORMAT_VERSION}"
        )
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("path"), str)
        and isinstance(e.get("size"), int)
        and isinstance(e.get("sha256"), str)
        for e in files
    ):
        raise _fail(f"{source / MANIFEST}: 'files' must list path, size and sha256")
    if not isinstance(manifest.get("database"), str) or not isinstance(
        manifest.get("schema_version"), int
    ):
        raise _fail(f"{source / MANIFEST}: 'database' or 'schema_version' is missing")
    return manifest


def _safe_relative(text: str) -> PurePosixPath:
    relative = PurePosixPath(text)
    if relative.is_absolute() or not relative.parts or ".." in relative.parts:
        raise _fail(f"the manifest names a file outside the data directory: {text!r}")
    return relative


def _stage_files(source: Path, manifest: dict[str, Any], staging: Path) -> None:
    """Copy every file the manifest lists into *staging*, each checked against its size
    and SHA-256; refuse files the manifest does not list."""
    data = source / DATA
    listed: set[PurePosixPath] = set()
    directories = manifest.get("directories", [])
    if not isinstance(directories, list) or not all(isinstance(d, str) for d in directories):
        raise _fail(f"{source / MANIFEST}: 'directories' must list folder paths")
    for directory in directories:  # the empty ones (ek-roots/) too
        _mkdirs(staging, _safe_relative(directory) / "_")
    for entry in manifest["files"]:
        relative = _safe_relative(entry["path"])
        if relative in listed:
            raise _fail(f"{MANIFEST} lists {relative} twice")
        listed.add(relative)
        path = data / relative
        if not path.is_file() or path.is_symlink():
            raise _fail(f"{DATA}/{relative} is missing")
        size, digest = _copy_private(path, _mkdirs(staging, relative))
        if size != entry["size"] or digest != entry["sha256"].lower():
            raise _fail(f"{DATA}/{relative} does not match its checksum in {MANIFEST}")
    for folder, _, files in os.walk(data):
        for name in files:
            relative = PurePosixPath((Path(folder) / name).relative_to(data).as_posix())
            if relative not in listed:
                raise _fail(f"{DATA}/{relative} is not in {MANIFEST}")
    if CONFIG_NAME not in {str(r) for r in listed}:
        raise _fail(f"{CONFIG_NAME} is missing")


def _check_pki(staging: Path, password: bytes | None) -> bool:
    """The root and intermediates parse and chain; with *password*, every key under
    secrets/ decrypts and the CA keys match their certificates. True if keys were checked."""
    config = load_config(staging)
    for files in (config.root, *config.issuers.values()):
        for path in (files.certificate, files.key):
            if _inside(path, staging) is None:
                raise _fail(f"{path} (named in {CONFIG_NAME}) is outside the backup")
    root = load_certificate(config.root.certificate)
    try:
        root.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise _fail(f"the root certificate does not verify: {exc}") from None
    for name, files in config.issuers.items():
        certificate = load_certificate(files.certificate)
        try:
            certificate.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise _fail(f"the {name} CA certificate is not issued by the root: {exc}") from None
    if password is None:
        return False
    pairs = [(config.root.certificate, config.root.key)] + [
        (files.certificate, files.key) for files in config.issuers.values()
    ]
    ca_keys = set()
    for certificate_path, key_path in pairs:
        key = load_private_key(key_path, password)
        ca_keys.add(key_path.resolve())
        if key.public_key() != load_certificate(certificate_path).public_key():
            raise _fail(f"{key_path} does not belong to {certificate_path}")
    for key_path in sorted((staging / "secrets").rglob("*.key")):
        if key_path.resolve() in ca_keys:
            continue
        try:
            serialization.load_pem_private_key(key_path.read_bytes(), password=password)
        except (ValueError, TypeError):
            raise _fail(
                f"{key_path.relative_to(staging)} does not decrypt with the password"
            ) from None
    return True


def _is_empty(directory: Path) -> bool:
    return not directory.exists() or (directory.is_dir() and not any(directory.iterdir()))


def _extract(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive, "r") as tar:
            for member in tar.getmembers():
                if not (member.isfile() or member.isdir()):
                    raise _fail(f"{archive} holds {member.name!r}, neither file nor folder")
            tar.extractall(into, filter="data")
    except tarfile.TarError as exc:
        raise _fail(f"{archive} is not a readable tar archive: {exc}") from None


def restore(
    backup_path: Path,
    data_dir: Path,
    *,
    password: bytes | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> RestoreResult:
    """Check the backup at *backup_path* and make *data_dir* hold it. Nothing is written
    to *data_dir* unless every check passes; a non-empty *data_dir* is refused unless
    *force*, and then kept as ``DIR.before-restore-STAMP``."""
    now = now or datetime.now(UTC)
    if not backup_path.exists():
        raise ConfigurationError(f"{backup_path} does not exist")
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigurationError(f"{data_dir} exists and is not a directory")
    if not _is_empty(data_dir) and not force:
        raise ConfigurationError(
            f"{data_dir} is not empty; restore into a new directory, or pass --force to"
            f" set the current one aside as {data_dir.name}.before-restore-STAMP"
        )
    extracted: Path | None = None
    staging: Path | None = None
    # The folders above DIR that do not exist yet: made for the staging folder, and
    # removed again if the restore is refused.
    missing = [p for p in reversed(data_dir.absolute().parents) if not p.exists()]
    restored = False
    try:
        source = backup_path
        if backup_path.is_file():
            extracted = Path(tempfile.mkdtemp(prefix="devid-restore-"))
            _extract(backup_path, extracted)
            source = extracted
        manifest = _read_manifest(source)
        for folder in missing:
            folder.mkdir(mode=_DIR_MODE, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=data_dir.parent))
        os.chmod(staging, _DIR_MODE)
        _stage_files(source, manifest, staging)
        database = _safe_relative(manifest["database"])
        try:
            report = inspect_database(staging / database)
        except ConfigurationError as exc:
            raise _fail(str(exc).replace(str(staging), DATA)) from None
        if not report.sound:
            raise _fail(
                f"the database fails its integrity check: {'; '.join(report.integrity[:3])}"
            )
        if not report.openable:
            raise _fail(
                f"the database has schema version {report.schema_version}, which this devid"
                " cannot open (a newer devid wrote it, or it is not a devid database)"
            )
        if report.schema_version != manifest["schema_version"]:
            raise _fail(
                f"the database has schema version {report.schema_version}, the manifest says"
                f" {manifest['schema_version']}"
            )
        try:
            keys_checked = _check_pki(staging, password)
        except ConfigurationError as exc:
            message = str(exc).replace(str(staging), DATA)
            raise _fail(message.removeprefix("backup refused: ")) from None
        previous: Path | None = None
        if data_dir.exists():
            if _is_empty(data_dir):
                data_dir.rmdir()
            else:
                previous = data_dir.with_name(f"{data_dir.name}.before-restore-{_stamp(now)}")
                if previous.exists():
                    raise ConfigurationError(f"{previous} exists; move it away first")
                os.rename(data_dir, previous)
        try:
            os.rename(staging, data_dir)
        except BaseException:
            if previous is not None:
                os.rename(previous, data_dir)
            raise
        staging = None
        restored = True
        _sync_directory(data_dir.parent)
        return RestoreResult(
            data_dir=data_dir,
            created_at=str(manifest.get("created_at", "unknown")),
            devid_version=str(manifest.get("devid_version", "unknown")),
            schema_version=report.schema_version,
            files=len(manifest["files"]),
            counts=report.counts,
            keys_checked=keys_checked,
            previous=previous,
        )
    finally:
        if staging is not None:
            _remove(staging)
        if extracted is not None:
            _remove(extracted)
        if not restored:
            for folder in reversed(missing):
                with contextlib.suppress(OSError):
                    folder.rmdir()
