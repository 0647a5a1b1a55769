"""pebble-challtestsrv (Debian ``pebble``) as a mock DNS server, and its management API.

:func:`start_challtestsrv` starts one with only its DNS server and its
management API enabled, both on free loopback ports, and returns once both
answer; :class:`ChallTestSrv` adds and clears records through the management
API and writes hook scripts ACME clients (lego, certbot) call for dns-01. The
test suite's fixtures (``tests/challtestsrv.py``) and the ACME benchmark both
use it.

What the server does (version 2.4, checked):

* Every ``A`` query for a name without its own record is answered with the
  default IPv4 address (127.0.0.1 here), so ``x.devid.test`` resolves to
  127.0.0.1 with no setup. ``AAAA`` has no default here (``-defaultIPv6 ""``).
* It never answers NXDOMAIN: unknown names and types get NOERROR with an empty
  answer ("no records"). ``set_servfail(host)`` makes every query for ``host``
  answer SERVFAIL.
* Record names are matched exactly as stored: lower case, fully qualified with the
  trailing dot. A record added as ``"Host.example"`` is accepted by the API
  (200 OK) and then silently never served. The helpers here normalise names with
  :func:`fqdn` for that reason; the request-history endpoints instead want the
  name *without* the trailing dot (also handled here).
* ``/set-txt`` *adds* a value (several values accumulate into one RRset);
  ``/clear-txt`` removes every value of that name at once.
* The management API takes JSON POST bodies and has no GET endpoints (``/`` is
  404); there is no ``-doh`` flag in 2.4 (passing it is a usage error).
"""

from __future__ import annotations

import functools
import shutil
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from .ports import LOOPBACK, free_port
from .processes import ManagedProcess, ProcessError

BINARY = "pebble-challtestsrv"
HOST = LOOPBACK
#: Attempts at a start (a free port may be taken before the server binds it).
ATTEMPTS = 3
#: The bound on one start, in seconds.
START_TIMEOUT = 10.0


def challtestsrv_available() -> bool:
    return shutil.which(BINARY) is not None


def fqdn(name: str) -> str:
    """The form pebble-challtestsrv stores names in: lower case, trailing dot."""
    return name.strip().lower().rstrip(".") + "."


class ChallTestSrvError(RuntimeError):
    """The management API refused a request, or the server could not be started."""


class ChallTestSrv:
    """A running pebble-challtestsrv with DNS on ``dns_resolver`` and helpers for its
    management API. Only the mock DNS is enabled (no HTTP-01/TLS-ALPN-01 servers)."""

    def __init__(
        self,
        process: ManagedProcess,
        dns_port: int,
        management_port: int,
        default_ipv4: str,
    ) -> None:
        self.process = process
        self.dns_port = dns_port
        self.management_port = management_port
        self.default_ipv4 = default_ipv4
        self._client = httpx.Client(base_url=self.management_url, timeout=5.0, trust_env=False)
        self._touched: dict[str, set[str]] = {}
        self._defaults_changed = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.process.stdout_path

    # --- addresses ---------------------------------------------------------------

    @property
    def dns_resolver(self) -> tuple[str, int]:
        """(host, port) of the mock DNS server (UDP and TCP)."""
        return (HOST, self.dns_port)

    @property
    def dns_address(self) -> str:
        """``127.0.0.1:PORT``, the form lego's ``--dns.resolvers`` takes."""
        return f"{HOST}:{self.dns_port}"

    @property
    def management_url(self) -> str:
        return f"http://{HOST}:{self.management_port}"

    # --- management API ----------------------------------------------------------

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        response = self._client.post(path, json=body)
        if response.status_code != 200:
            raise ChallTestSrvError(
                f"{path} {body}: HTTP {response.status_code} {response.text.strip()}"
            )
        return response

    def _record(self, kind: str, host: str) -> str:
        name = fqdn(host)
        self._touched.setdefault(kind, set()).add(name)
        return name

    def set_txt(self, host: str, value: str) -> None:
        """Add ``value`` to the TXT RRset of ``host`` (values accumulate)."""
        self.post("/set-txt", {"host": self._record("txt", host), "value": value})

    def clear_txt(self, host: str) -> None:
        """Remove every TXT value of ``host``."""
        self.post("/clear-txt", {"host": fqdn(host)})

    def add_a(self, host: str, addresses: list[str]) -> None:
        self.post("/add-a", {"host": self._record("a", host), "addresses": addresses})

    def clear_a(self, host: str) -> None:
        self.post("/clear-a", {"host": fqdn(host)})

    def add_aaaa(self, host: str, addresses: list[str]) -> None:
        self.post("/add-aaaa", {"host": self._record("aaaa", host), "addresses": addresses})

    def clear_aaaa(self, host: str) -> None:
        self.post("/clear-aaaa", {"host": fqdn(host)})

    def set_cname(self, host: str, target: str) -> None:
        self.post("/set-cname", {"host": self._record("cname", host), "target": fqdn(target)})

    def clear_cname(self, host: str) -> None:
        self.post("/clear-cname", {"host": fqdn(host)})

    def add_caa(self, host: str, policies: list[dict[str, str]]) -> None:
        """``policies`` like ``[{"tag": "issue", "value": "ca.example"}]``."""
        self.post("/add-caa", {"host": self._record("caa", host), "policies": policies})

    def clear_caa(self, host: str) -> None:
        self.post("/clear-caa", {"host": fqdn(host)})

    def set_servfail(self, host: str) -> None:
        """Every query for ``host`` answers SERVFAIL (overrides other records)."""
        self.post("/set-servfail", {"host": self._record("servfail", host)})

    def clear_servfail(self, host: str) -> None:
        self.post("/clear-servfail", {"host": fqdn(host)})

    def set_default_ipv4(self, ip: str) -> None:
        """The answer to A queries without their own record ("" for none)."""
        self._defaults_changed = True
        self.post("/set-default-ipv4", {"ip": ip})

    def set_default_ipv6(self, ip: str) -> None:
        """The answer to AAAA queries without their own record ("" for none)."""
        self._defaults_changed = True
        self.post("/set-default-ipv6", {"ip": ip})

    def dns_requests(self, host: str) -> list[dict[str, Any]]:
        """Queries received for ``host`` (``[{"Question": {"Name", "Qtype", "Qclass"}}]``)."""
        response = self.post("/dns-request-history", {"host": fqdn(host).rstrip(".")})
        data = response.json()
        return list(data) if isinstance(data, list) else []

    def clear_dns_requests(self, host: str) -> None:
        self.post("/clear-request-history", {"host": fqdn(host).rstrip("."), "type": "dns"})

    _CLEAR = {
        "txt": "/clear-txt",
        "a": "/clear-a",
        "aaaa": "/clear-aaaa",
        "cname": "/clear-cname",
        "caa": "/clear-caa",
        "servfail": "/clear-servfail",
    }

    def reset(self) -> None:
        """Remove every record set through these helpers; restore the defaults."""
        for kind, names in self._touched.items():
            for name in names:
                self.post(self._CLEAR[kind], {"host": name})
        self._touched.clear()
        if self._defaults_changed:
            self.post("/set-default-ipv4", {"ip": self.default_ipv4})
            self.post("/set-default-ipv6", {"ip": ""})
            self._defaults_changed = False

    # --- hooks for ACME clients ----------------------------------------------------

    def write_dns_hook(self, path: Path) -> Path:
        """An executable script that sets/clears TXT records on this server.

        * lego: ``--dns exec`` with ``EXEC_PATH=path``; lego calls
          ``path present|cleanup _acme-challenge.NAME. VALUE``.
        * certbot: ``--manual-auth-hook "path present"`` and
          ``--manual-cleanup-hook "path cleanup"``; the name and value come from
          ``CERTBOT_DOMAIN`` / ``CERTBOT_VALIDATION``.

        ``cleanup`` clears *every* TXT value of the name (the server cannot remove
        one value), which is harmless once validation is over. Records the script
        sets are not tracked by :meth:`reset`: rely on the client's cleanup call or
        use names unique to the test.
        """
        script = f"""#!{sys.executable}
import json, os, sys, urllib.request
mode = sys.argv[1]
if len(sys.argv) >= 4:
    name, value = sys.argv[2], sys.argv[3]
else:
    name = "_acme-challenge." + os.environ["CERTBOT_DOMAIN"].removeprefix("*.")
    value = os.environ.get("CERTBOT_VALIDATION", "")
name = name.strip().lower().rstrip(".") + "."
if mode == "present":
    path, body = "/set-txt", {{"host": name, "value": value}}
elif mode == "cleanup":
    path, body = "/clear-txt", {{"host": name}}
else:
    sys.exit(f"unknown mode {{mode!r}}")
request = urllib.request.Request(
    {self.management_url!r} + path,
    data=json.dumps(body).encode(),
    headers={{"Content-Type": "application/json"}},
    method="POST",
)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
with opener.open(request, timeout=10) as response:
    if response.status != 200:
        sys.exit(f"{{path}}: HTTP {{response.status}}")
"""
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path

    # --- lifecycle -----------------------------------------------------------------

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL); its exit status."""
        self._client.close()
        return self.process.stop(timeout=5.0)

    def __enter__(self) -> ChallTestSrv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ready(dns_port: int, management_port: int, default_ipv4: str) -> bool:
    """Both servers answer: the management API (any HTTP status) and the DNS server
    (NOERROR, with the default address when there is one)."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    try:
        httpx.get(f"http://{HOST}:{management_port}/", timeout=0.5, trust_env=False)
        query = dns.message.make_query("ready.challtestsrv.test.", "A")
        reply = dns.query.udp(query, HOST, port=dns_port, timeout=0.5)
    except (httpx.HTTPError, OSError, dns.exception.DNSException):
        return False
    return reply.rcode() == dns.rcode.NOERROR and (bool(reply.answer) or not default_ipv4)


def start_challtestsrv(
    workdir: Path,
    *,
    default_ipv4: str = LOOPBACK,
    cpus: Sequence[int] | None = None,
    timeout: float = START_TIMEOUT,
    attempts: int = ATTEMPTS,
) -> ChallTestSrv:
    """Start pebble-challtestsrv (mock DNS and management API only) on free loopback
    ports and wait until both answer. Its output goes to ``workdir/challtestsrv-N.log``;
    *cpus* keeps it to those CPUs. A start that fails (a port taken meanwhile) is
    tried again, *attempts* times in all."""
    binary = shutil.which(BINARY)
    if binary is None:
        raise ChallTestSrvError(f"{BINARY} not found (Debian package pebble)")
    workdir.mkdir(parents=True, exist_ok=True)
    failure = ""
    for attempt in range(attempts):
        dns_port, management_port = free_port(udp=True), free_port()
        argv = [binary, "-dns01", f"{HOST}:{dns_port}", "-http01", "", "-https01", ""]
        argv += ["-tlsalpn01", "", "-management", f"{HOST}:{management_port}"]
        argv += ["-defaultIPv4", default_ipv4, "-defaultIPv6", ""]
        process = ManagedProcess(
            argv, stdout=workdir / f"challtestsrv-{attempt}.log", cpus=cpus, name=BINARY
        )
        try:
            process.wait_until(
                functools.partial(_ready, dns_port, management_port, default_ipv4),
                timeout=timeout,
                what=f"answer on {HOST}:{dns_port} (DNS) and {HOST}:{management_port}",
            )
        except ProcessError as exc:
            process.stop()
            failure = str(exc)
            continue
        return ChallTestSrv(process, dns_port, management_port, default_ipv4)
    raise ChallTestSrvError(f"{BINARY} did not start ({attempts} attempts):\n{failure}")
