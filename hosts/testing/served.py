"""A kit CA served by a real ``devid serve``, for a plugin's tests over HTTPS.

:class:`ServedCA` runs ``devid serve`` (on the quart or the raw host, see
:mod:`hosts.testing.servers`) on the directory of a :class:`hosts.testing.ca.LocalCA`,
on 127.0.0.1 and a port the server chooses, and gives what a test needs to talk
to it: the URL, the CA root to trust, an ``httpx`` client that trusts only that
root, the token audiences, and the API calls a provisioner's clients make.

The server is another process: it loads the plugins *installed* in this
environment (their ``devid`` entry points) and the ``devid.toml`` as it is when
it starts. A plugin a test registered only on the in-process CA
(``LocalCA.register_plugin``) is not loaded there; a provisioner table of its
type then stops the server, and the error quotes the server's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .ca import bound_text
from .servers import HOSTS, DevidServer, start_devid_serve, tls_context

if TYPE_CHECKING:
    from .ca import Bound, LocalCA

SIGN_PATH = "/1.0/sign"
REVOKE_PATH = "/1.0/revoke"


class ServedCA:
    """``devid serve`` on a kit CA's directory (start one with :meth:`start`)."""

    def __init__(self, ca: LocalCA, server: DevidServer, host: str) -> None:
        self.ca = ca
        self.server = server
        #: ``"quart"`` or ``"raw"``.
        self.host = host

    @classmethod
    def start(
        cls,
        ca: LocalCA,
        workdir: Path,
        *,
        host: str = "quart",
        workers: int = 1,
        timeout: float = 30.0,
    ) -> ServedCA:
        """Serve *ca*'s directory on *host*; its log and password file go in *workdir*.

        Returns once ``/health`` answers over TLS; raises
        :class:`hosts.testing.processes.ProcessError` with the server's output if it
        does not start.
        """
        if host not in HOSTS:
            raise ValueError(f"unknown host {host!r}: one of {', '.join(HOSTS)}")
        workdir.mkdir(parents=True, exist_ok=True)
        password = workdir / "password"
        password.write_bytes(ca.password + b"\n")
        password.chmod(0o600)
        server = start_devid_serve(
            ca.data_dir,
            workdir / f"devid-serve-{host}.log",
            host=host,
            password_file=password,
            workers=workers,
            timeout=timeout,
        )
        return cls(ca, server, host)

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``"""
        return self.server.url

    @property
    def root_path(self) -> Path:
        """The CA root (PEM) the server's certificate chains to: trust this one."""
        return self.server.root_path

    @property
    def data_dir(self) -> Path:
        return self.ca.data_dir

    def audience(self, path: str = SIGN_PATH) -> str:
        """The token audience the server accepts on *path* (its 127.0.0.1 URL)."""
        return f"{self.url}{path}"

    def client(self, **options: Any) -> httpx.Client:
        """An ``httpx.Client`` for the server: base URL set, trusting only the CA root,
        proxies from the environment ignored. *options* go to ``httpx.Client``."""
        options.setdefault("timeout", 30.0)
        return httpx.Client(
            base_url=self.url, verify=tls_context(self.root_path), trust_env=False, **options
        )

    def sign(
        self,
        csr_pem: str,
        credential: str,
        not_before: Bound = None,
        not_after: Bound = None,
    ) -> httpx.Response:
        """``POST /1.0/sign``; 201 with ``crt``, ``ca`` and ``certChain`` when issued."""
        body: dict[str, Any] = {"csr": csr_pem, "ott": credential}
        for key, value in (("notBefore", not_before), ("notAfter", not_after)):
            text = bound_text(value)
            if text is not None:
                body[key] = text
        with self.client() as http:
            return http.post(SIGN_PATH, json=body)

    def revoke(self, serial: int, credential: str, **fields: Any) -> httpx.Response:
        """``POST /1.0/revoke`` with a token of the issuing provisioner."""
        with self.client() as http:
            return http.post(REVOKE_PATH, json={"serial": str(serial), "ott": credential, **fields})

    def provisioners(self) -> list[dict[str, Any]]:
        """``GET /provisioners``: every provisioner's public view."""
        with self.client() as http:
            response = http.get("/provisioners")
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["provisioners"]
        return found

    def mint_token(
        self,
        subject: str,
        sans: Sequence[str] = (),
        *,
        provisioner: str = "admin",
        path: str = SIGN_PATH,
        now: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=5),
        csr_der: bytes | None = None,
    ) -> str:
        """A token of a provisioner that mints them on the CA host (``admin`` by
        default), for this server's *path*."""
        return self.ca.mint_token(
            subject,
            sans,
            provisioner=provisioner,
            audience=self.audience(path),
            now=now,
            lifetime=lifetime,
            csr_der=csr_der,
        )

    def stop(self) -> int | None:
        """Stop the server; its exit status."""
        return self.server.stop()
