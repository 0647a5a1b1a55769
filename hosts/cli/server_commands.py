"""Server-side commands: init, serve, token, plugins."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from engine.durations import parse_duration
from engine.errors import BadRequest, ConfigurationError
from engine.keys import KeyType
from hosts.core.config import DEFAULT_LISTEN, load_config, parse_listen
from hosts.core.init import DEFAULT_PROVISIONER, InitResult, init_data_dir, is_initialised
from hosts.core.secrets import require_password, resolve_password

from .common import add_data_options, ca_data_dir, data_dir


def register(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="create a new CA in the data directory",
        description="Create a CA in the data directory: a root and four intermediates under it,"
        " each vouching for one thing (docs/ca.md): the Attestation CA (TPM attestation keys),"
        " the Agent CA (device certificates, ACME device-attest-01 only), the Account CA"
        " (Wi-Fi/VPN account certificates) and the TLS CA (everything else: ACME"
        " http-01/dns-01/tls-alpn-01, JWK tokens, the server's own certificate, admin client"
        " certificates); their keys encrypted with the password; devid.toml with a JWK"
        " provisioner and the `acme` (TLS CA) and `devices` (Agent CA) ACME provisioners;"
        " an admin API token; the database.",
    )
    add_data_options(p)
    p.add_argument("--name", default="devid", help="organisation name in CA subjects")
    p.add_argument(
        "--key-type",
        default="P-256",
        choices=[k.value for k in KeyType],
        help="key type of the root and intermediate CAs (default P-256)",
    )
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="address `devid serve` listens on")
    p.add_argument(
        "--dns",
        action="append",
        default=None,
        metavar="NAME",
        help="a name clients use to reach the CA (repeatable; default localhost and 127.0.0.1)",
    )
    p.add_argument(
        "--provisioner", default=DEFAULT_PROVISIONER, help="name of the default JWK provisioner"
    )
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "serve",
        help="run the CA server",
        description="Run the CA over HTTPS (the REST API, the Attestation CA and an ACME server"
        " per ACME provisioner at /acme/NAME/directory). Initialises the data directory first"
        " if it is empty; a data directory made by an older devid first gets what this version"
        " adds (the TLS CA; see docs/ca.md).",
    )
    add_data_options(p)
    p.add_argument("--listen", default=None, metavar="HOST:PORT", help="default from devid.toml")
    p.add_argument(
        "--host",
        default="quart",
        choices=["quart", "raw"],
        help="server implementation: quart (quart-trio on hypercorn: HTTP/1.1 and HTTP/2, the"
        " operator's server) or raw (trio + h11, HTTP/1.1, least overhead) (default quart)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes sharing the port (raw host only; default 1)",
    )
    p.add_argument(
        "--no-worker-affinity",
        dest="worker_affinity",
        action="store_false",
        help="with --workers N: let the kernel place the workers (by default each keeps to a"
        " CPU of its own when there are N CPUs or more)",
    )
    p.add_argument(
        "--acme-http01-port",
        type=int,
        default=None,
        metavar="PORT",
        help="port ACME http-01 validation connects to (default [acme] http01_port, else 80)",
    )
    p.add_argument(
        "--acme-tlsalpn01-port",
        type=int,
        default=None,
        metavar="PORT",
        help="port ACME tls-alpn-01 validation connects to (default [acme] tlsalpn01_port,"
        " else 443)",
    )
    p.add_argument(
        "--acme-dns-resolver",
        default=None,
        metavar="HOST:PORT",
        help="DNS server for every lookup ACME validation makes (default [acme] dns_resolver,"
        " else the system's)",
    )
    p.add_argument("--log-format", default="json", choices=["json", "text"])
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "token",
        help="mint a one-time token for `devid ca certificate` or `devid ca revoke`",
    )
    add_data_options(p)
    p.add_argument("--provisioner", default=None, help="JWK provisioner (default: the first)")
    p.add_argument("--subject", help="certificate subject (common name)")
    p.add_argument("--san", action="append", default=[], help="a SAN (repeatable; default SUBJECT)")
    p.add_argument(
        "--revoke", metavar="SERIAL", help="mint a revocation token for SERIAL (decimal or 0x-hex)"
    )
    p.add_argument(
        "--ca-url",
        default=os.environ.get("DEVID_CA_URL"),
        help="the CA URL clients use (default $DEVID_CA_URL, else from devid.toml)",
    )
    p.add_argument("--lifetime", default="5m", help="token lifetime (default 5m)")
    p.add_argument("--csr", type=Path, help="bind the token to this CSR (PEM or DER)")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("plugins", help="list loaded plugins and what they register")
    add_data_options(p)
    p.set_defaults(func=cmd_plugins)


def ca_summary() -> str:
    """The intermediates and what each vouches for, in one line."""
    return (
        "Attestation CA (TPM attestation keys), Agent CA (devices), Account CA (accounts),"
        " TLS CA (servers, tokens, admins)"
    )


def _print_init(result: InitResult) -> None:
    print(f"Initialised a devid CA in {result.data_dir}")
    print(f"  root certificate: {result.root_path}")
    print(f"  root fingerprint: {result.root_fingerprint}")
    print(f"  intermediates:    {ca_summary()}")
    print(f"  JWK provisioner:  {result.provisioner}")
    print(f"  admin API token:  {result.admin_token} (mode 0600)")
    if result.generated_password:
        print(
            f"  The CA keys are encrypted with a generated password in {result.generated_password}"
            " (mode 0600); keep a copy somewhere safe."
        )


def cmd_init(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    password = resolve_password(directory, args.password_file)
    if password is not None and password.source.startswith("file " + str(directory)):
        password = None  # a leftover generated file is not an operator's choice
    result = init_data_dir(
        directory,
        password,
        name=args.name,
        key_type=KeyType.parse(args.key_type),
        listen=args.listen,
        dns_names=tuple(args.dns or ("localhost", "127.0.0.1")),
        provisioner=args.provisioner,
    )
    _print_init(result)
    return 0


#: The lock file a serving process holds in its data directory (its pid inside).
SERVE_LOCK = "serve.lock"


class ServeRefused(Exception):
    """``devid serve`` cannot start; the message says why and what to do, in one line."""


def lock_data_dir(directory: Path) -> IO[str]:
    """Hold ``DIR/serve.lock`` (flock) for as long as the returned file stays open: one
    server per data directory. Worker processes inherit the lock with the file. Commands
    that only write to the store (``devid device add``) do not take it."""
    import fcntl

    lock = open(directory / SERVE_LOCK, "a+", encoding="ascii")  # noqa: SIM115 (held open)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise ServeRefused(
            f"devid serve: {directory} is already being served by pid {holder}"
            f" ({directory / SERVE_LOCK} is locked) — stop that server first, or serve"
            " another data directory with --data DIR"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _listen_error(listen: str, exc: OSError) -> ServeRefused:
    if exc.errno == errno.EADDRINUSE:
        reason = "address already in use — stop the other server or choose another with"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied (ports below 1024 need privileges) — choose another with"
    else:
        reason = f"{exc.strerror or exc} — check the address, or choose another with"
    return ServeRefused(f"devid serve: cannot listen on {listen}: {reason} --listen HOST:PORT")


def check_listen(listen: str) -> None:
    """Bind *listen* once and let it go, so a port in use stops start-up before anything
    is issued (the server binds it again moments later)."""
    import socket

    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1)
    except OSError as exc:
        raise _listen_error(listen, exc) from None


def _first_os_error(exc: BaseException) -> OSError | None:
    """The OSError in *exc*, looking inside (trio's) exception groups."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_os_error(inner)
            if found is not None:
                return found
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        return _serve(args)
    except ServeRefused as exc:
        print(exc, file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace) -> int:
    import signal

    from hosts.core.authority import Authority
    from hosts.core.logs import configure_logging

    # SIGHUP reloads once the server runs; until then it waits (blocked, not lost), so
    # that it neither ends the process nor misses a change made while starting.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    configure_logging(args.log_level, args.log_format)
    directory = data_dir(args)
    if not is_initialised(directory):
        result = init_data_dir(directory, resolve_password(directory, args.password_file))
        _print_init(result)
    password = require_password(directory, args.password_file)
    lock = lock_data_dir(directory)
    try:
        listen = args.listen or load_config(directory).server.listen
        check_listen(listen)
        authority = Authority.load(directory, password.value)
        return _serve_authority(args, directory, password.value, authority)
    finally:
        lock.close()


def _serve_authority(
    args: argparse.Namespace, directory: Path, password: bytes, authority: Any
) -> int:
    import trio

    acme_overrides = functools.partial(
        _configure_acme,
        http01_port=args.acme_http01_port,
        tlsalpn01_port=args.acme_tlsalpn01_port,
        dns_resolver=args.acme_dns_resolver,
    )
    acme_overrides(authority)  # a bad flag stops start-up here
    listen = args.listen or authority.config.server.listen
    parse_listen(listen)
    if args.workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    if args.workers > 1 and args.host != "raw":
        raise ConfigurationError("--workers needs --host raw (the quart host runs one process)")

    def ready(urls: list[str]) -> None:
        print(f"devid CA ready; root fingerprint {authority.root_fingerprint}", flush=True)
        print(f"  intermediates: {ca_summary()}", flush=True)
        for url in urls:
            print(f"  {url}", flush=True)

    try:
        if args.workers > 1:
            from hosts.raw import serve_workers

            authority.close()
            os.environ.setdefault("DEVID_LOG_LEVEL", args.log_level)
            os.environ.setdefault("DEVID_LOG_FORMAT", args.log_format)
            return serve_workers(
                directory,
                password,
                listen,
                args.workers,
                on_ready=ready,
                prepare=acme_overrides,
                pin_cpus=args.worker_affinity,
            )
        from hosts.quart import serve as quart_serve
        from hosts.raw import serve as raw_serve

        serve = raw_serve if args.host == "raw" else quart_serve

        async def run() -> None:
            async with trio.open_nursery() as nursery:
                ready(await nursery.start(serve, authority, listen))

        trio.run(run)
    except BaseException as exc:  # trio's nurseries wrap a failed bind in exception groups
        found = _first_os_error(exc)
        if found is None or found.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EPERM):
            raise
        raise _listen_error(listen, found) from None
    finally:
        authority.close()
    return 0


def _configure_acme(
    authority: Any,
    *,
    http01_port: int | None,
    tlsalpn01_port: int | None,
    dns_resolver: str | None,
) -> None:
    """``devid serve --acme-*`` flags override ``[acme]`` in devid.toml."""
    authority.acme.configure(
        http01_port=http01_port, tlsalpn01_port=tlsalpn01_port, dns_resolver=dns_resolver
    )


def _minting_provisioner(directory: Path, name: str | None) -> Any:
    """The configured provisioner (*name*, or the first) whose tokens this host can mint."""
    from hosts.core.authority import configured_provisioners
    from plugins.manager import PluginManager

    config = load_config(directory)
    plugins = PluginManager(disabled=config.plugins_disabled)
    provisioners = configured_provisioners(config, plugins, None)
    minting = {n: p for n, p in provisioners.items() if p.mints_tokens}
    if not minting:
        raise ConfigurationError("no provisioner that mints tokens (JWK) is configured")
    if name is None:
        return config, next(iter(minting.values()))
    if name not in minting:
        raise ConfigurationError(
            f"no provisioner named {name!r} mints tokens (those that do: {', '.join(minting)})"
        )
    return config, minting[name]


def cmd_token(args: argparse.Namespace) -> int:
    from hosts.core.ports import SystemClock
    from hosts.core.upgrade import upgrade_data_dir

    directory = ca_data_dir(args)
    password = require_password(directory, args.password_file)
    upgrade_data_dir(directory, password.value)  # an older data directory gets the TLS CA
    config, provisioner = _minting_provisioner(directory, args.provisioner)
    minter = provisioner.token_minter(password.value)
    if args.ca_url:
        ca_url = args.ca_url.rstrip("/")
    else:
        _, port = parse_listen(config.server.listen)
        host = config.server.dns_names[0] if config.server.dns_names else "localhost"
        ca_url = f"https://{host}:{port}"
    try:
        lifetime = parse_duration(args.lifetime)
    except BadRequest as exc:
        raise ConfigurationError(exc.detail) from None
    if lifetime > minter.max_lifetime or lifetime <= timedelta(0):
        raise ConfigurationError(
            f"--lifetime must be positive and at most the provisioner's"
            f" max_token_lifetime ({minter.max_lifetime})"
        )
    csr_der = None
    if args.csr is not None:
        from engine.csr import parse_csr

        csr_der = parse_csr(args.csr.read_bytes()).der
    if args.revoke:
        from agent.caclient import decimal_serial

        serial = decimal_serial(args.revoke)
        subject, audience, sans = serial, f"{ca_url}/1.0/revoke", [serial]
    else:
        if not args.subject:
            raise ConfigurationError("--subject is required (or --revoke SERIAL)")
        subject, audience, sans = args.subject, f"{ca_url}/1.0/sign", args.san
    token = minter.mint(
        subject=subject,
        audience=audience,
        now=SystemClock().now(),
        jti=uuid.uuid4().hex,
        sans=sans,
        lifetime=lifetime,
        csr_der=csr_der,
    )
    print(token)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from plugins.manager import PluginManager

    directory = data_dir(args)
    disabled: tuple[str, ...] = ()
    with contextlib.suppress(ConfigurationError):
        disabled = load_config(directory).plugins_disabled
    manager = PluginManager(disabled=disabled)
    infos = manager.plugins()
    if not infos:
        print("no plugins loaded")
    for info in infos:
        origin = f" ({info.distribution})" if info.distribution else ""
        print(f"{info.name}: {info.module}{origin}")
        if info.provisioner_types:
            print(f"  provisioner types:   {', '.join(info.provisioner_types)}")
        if info.attestation_formats:
            print(f"  attestation formats: {', '.join(info.attestation_formats)}")
    for name in sorted(disabled):
        print(f"{name}: disabled in devid.toml")
    sys.stdout.flush()
    return 0
