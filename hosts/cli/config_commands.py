"""``devid config check``: devid.toml, and what the server would build from it, checked
without starting anything."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import attrs

from engine.errors import ConfigurationError
from hosts.core.config import (
    CONFIG_NAME,
    SCHEMA,
    ConfigProblems,
    KeyLines,
    KeyPath,
    check_disabled_plugins,
    installed_plugins,
    load_config,
)
from hosts.core.secrets import PASSWORD_ENV, resolve_password

from .common import add_data_options, data_dir

CHECK_HELP = f"""\
Read DIR/{CONFIG_NAME} as `devid serve` would and build what the server builds from it
(plugins, attestation policy, ACME validation settings, every provisioner, the CA
certificates and, with the password, the CA keys) without listening, opening the
database or changing a file. Unknown tables and keys, bad values and provisioners that
cannot be built are each printed as FILE:LINE: MESSAGE, and the exit status is 1.

Without a password (--password-file, ${PASSWORD_ENV} or DIR/secrets/password) the CA
keys are not decrypted; the check says so and checks the rest.
"""


def register(sub: Any) -> None:
    config = sub.add_parser("config", help="check devid.toml without starting the server")
    config_sub = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    p = config_sub.add_parser(
        "check",
        help="check devid.toml and what the server builds from it",
        description=CHECK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_options(p)
    p.set_defaults(func=cmd_check)


@attrs.define
class _Check:
    """The problems found so far, each placed on its line of devid.toml where known."""

    path: Path
    lines: KeyLines
    problems: list[str] = attrs.field(factory=list)

    def add(self, key: KeyPath, error: BaseException, names: Iterable[str] = ()) -> None:
        """*error* about the table or key *key*; if the message names one of the table's
        *names*, the line of the first one named."""
        if isinstance(error, ConfigProblems):
            self.problems.extend(str(problem) for problem in error.problems)
            return
        message = str(error) if isinstance(error, ConfigurationError) else repr(error)
        for prefix in (f"{self.path}: ", f"{self.path} "):
            message = message.removeprefix(prefix)
        named = [
            (match.start(), name)
            for name in names
            if (match := re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", message))
        ]
        if named:
            key = (*key, min(named)[1])
        line = self.lines.find(key)
        self.problems.append(f"{self.path}{'' if line is None else f':{line}'}: {message}")


def cmd_check(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    path = directory / CONFIG_NAME
    try:
        config = load_config(directory)
    except ConfigProblems as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    except ConfigurationError as exc:
        message = str(exc)
        print(message if message.startswith(str(path)) else f"{path}: {message}")
        return 1
    check = _Check(path, KeyLines(path.read_text()))
    notes: list[str] = []
    password = resolve_password(directory, args.password_file)

    from hosts.core.authority import provisioner_environment
    from hosts.core.pki import load_certificate, load_issuers
    from hosts.core.runtime import inventory_sync_interval
    from hosts.service.attestation import load_attestation_policy
    from hosts.service.provisioners import load_provisioners
    from hosts.validation import ValidationConfig
    from plugins.manager import PluginManager

    try:
        check_disabled_plugins(config, installed_plugins())
    except ConfigurationError as exc:
        check.add(("plugins", "disabled"), exc)
    plugins: PluginManager | None = None
    try:
        plugins = PluginManager(disabled=config.plugins_disabled)
    except ConfigurationError as exc:
        check.add(("plugins",), exc)
    try:
        load_attestation_policy(config.attestation, config.data_dir)
    except ConfigurationError as exc:
        check.add(("attestation",), exc, SCHEMA["attestation"])
    try:
        ValidationConfig.from_table(config.acme)
    except ConfigurationError as exc:
        check.add(("acme",), exc, SCHEMA["acme"])
    try:
        # It reads only the configuration of what it is given.
        inventory_sync_interval(cast(Any, SimpleNamespace(config=config)))
    except ConfigurationError as exc:
        check.add(("inventory", "sync_interval"), exc)

    names: list[str] = []
    if plugins is not None:
        env = provisioner_environment(config, None if password is None else password.value)
        for index, table in enumerate(config.provisioners):
            try:
                built = load_provisioners([table], plugins, env)
            except Exception as exc:  # a plugin's own error is a problem to report too
                check.add(("provisioners", index), exc, table)
                continue
            for name in built:
                if name in names:
                    check.add(
                        ("provisioners", index, "name"),
                        ConfigurationError(f"two provisioners are named {name!r}"),
                    )
                names.append(name)

    try:
        load_certificate(config.root.certificate)
    except ConfigurationError as exc:
        check.add(("ca", "root", "certificate"), exc)
    for issuer, files in config.issuers.items():
        where: KeyPath = ("ca", "intermediates", issuer)
        try:
            load_certificate(files.certificate)
            if password is not None:
                load_issuers(attrs.evolve(config, issuers={issuer: files}), password.value)
            elif not files.key.is_file():
                raise ConfigurationError(f"CA key {files.key} is missing")
        except ConfigurationError as exc:
            check.add(where, exc)
    if password is None:
        notes.append(
            "skipped: decrypting the CA keys (no password: give --password-file FILE,"
            f" ${PASSWORD_ENV} or DIR/secrets/password)"
        )
    if config.admin.client_subjects:
        notes.append(
            "note: [admin] client_subjects grants nothing any more; issue admin certificates"
            " with `devid admin certificate` and remove it"
        )

    if check.problems:
        print("\n".join(check.problems))
        return 1
    listed = f": {', '.join(names)}" if names else ""
    print(f"ok: {CONFIG_NAME} is valid ({len(names)} provisioners{listed})")
    for note in notes:
        print(note)
    return 0
