"""A loopback imitation of a cloud's instance metadata server, for tests and the docs.

:class:`GCPMetadataServer` answers as Google Compute Engine's metadata server does for
what devid uses of it:

- ``GET /computeMetadata/v1/instance/service-accounts/default/identity?audience=A``
  (``&format=full``): the instance identity token, a JWT for audience ``A`` signed
  RS256 with the server's own RSA-2048 key (``kid`` in its header), with iss
  ``https://accounts.google.com``, azp and sub the service account's unique id, email
  and email_verified, iat, exp an hour later, and with ``format=full`` the
  ``google.compute_engine`` claims of :class:`GCPInstance`;
- ``GET /computeMetadata/v1/instance/id``, ``.../name``, ``.../zone`` and
  ``/computeMetadata/v1/project/project-id``: the instance's facts, as text;
- ``GET /oauth2/v3/certs``: the JWK set with the public key, what a GCP provisioner's
  ``jwks_url`` points at in tests in place of Google's.

A metadata path answers only a request with the header ``Metadata-Flavor: Google``
(403 without, as GCE does), and every answer carries that header. The server listens
on 127.0.0.1 only, in a thread of the caller::

    with GCPMetadataServer(GCPInstance(instance_id="42", instance_name="web-1")) as server:
        run(f"devid ca certificate web-1 web.crt web.key --provisioner gcp"
            f" --metadata-url {server.url} ...")
        server.instance = GCPInstance(instance_id="43")   # another instance from now on

``python -m hosts.testing.metadata`` runs one in the foreground (the docs' examples).
"""

from __future__ import annotations

import argparse
import http.server
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.jose import jwk_from_public_key, sign_compact

from .ports import LOOPBACK

GOOGLE_ISSUER = "https://accounts.google.com"
IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity"
JWKS_PATH = "/oauth2/v3/certs"
#: How long Google's identity tokens are valid.
TOKEN_LIFETIME = timedelta(hours=1)
#: How often the serving thread looks for a stop, in seconds (stopping waits this long).
POLL_INTERVAL = 0.05


@attrs.frozen
class GCPInstance:
    """The facts of one GCE instance, as its identity token states them."""

    project_id: str = "my-project"
    project_number: int = 123456789012
    zone: str = "europe-west1-b"
    instance_id: str = "4520716384629103847"
    instance_name: str = "web-1"
    #: When the instance was created; None: a minute before each token is minted.
    created_at: datetime | None = None
    service_account_email: str = "web@my-project.iam.gserviceaccount.com"
    #: The service account's unique id (the token's azp and sub).
    service_account_id: str = "104938572610384756102"

    def compute_engine(self, now: datetime) -> dict[str, Any]:
        """The ``google.compute_engine`` claim of a ``format=full`` token minted at *now*."""
        created = self.created_at if self.created_at is not None else now - timedelta(minutes=1)
        return {
            "instance_creation_timestamp": int(created.timestamp()),
            "instance_id": self.instance_id,
            "instance_name": self.instance_name,
            "project_id": self.project_id,
            "project_number": self.project_number,
            "zone": self.zone,
        }


class GCPMetadataServer:
    """GCE's metadata server and Google's JWK set on 127.0.0.1 (see the module's text).

    *instance* may be replaced while it serves; *now* (default: the system clock) dates
    the tokens. :meth:`token` mints one without a request.
    """

    def __init__(
        self,
        instance: GCPInstance | None = None,
        *,
        port: int = 0,
        issuer: str = GOOGLE_ISSUER,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.instance = instance if instance is not None else GCPInstance()
        self.issuer = issuer
        self._now: Callable[[], datetime] = now if now is not None else _system_now
        self._lock = threading.Lock()
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.rotate_key()
        #: The audiences asked for, in order (for tests to check what a client sent).
        self.audiences: list[str] = []
        self._httpd = _Server((LOOPBACK, port), _Handler)
        self._httpd.metadata = self
        self._thread: threading.Thread | None = None

    # --- keys and tokens ----------------------------------------------------------------------

    def rotate_key(self) -> str:
        """Sign with a new RSA-2048 key from now on (the JWK set keeps the old one too, as
        Google's does while its tokens are valid); its kid."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = secrets.token_hex(20)
        with self._lock:
            self._keys.insert(0, (kid, key))
        return kid

    @property
    def kid(self) -> str:
        """The kid of the key tokens are signed with now."""
        with self._lock:
            return self._keys[0][0]

    def jwks(self) -> dict[str, Any]:
        """The JWK set ``/oauth2/v3/certs`` serves."""
        with self._lock:
            keys = list(self._keys)
        return {
            "keys": [
                {**jwk_from_public_key(key.public_key()), "alg": "RS256", "use": "sig", "kid": kid}
                for kid, key in keys
            ]
        }

    def claims(
        self, audience: str, *, full: bool = True, instance: GCPInstance | None = None
    ) -> dict[str, Any]:
        """The claims of an identity token for *audience* minted now."""
        facts = instance if instance is not None else self.instance
        now = self._now()
        claims: dict[str, Any] = {
            "aud": audience,
            "azp": facts.service_account_id,
            "email": facts.service_account_email,
            "email_verified": True,
            "exp": int((now + TOKEN_LIFETIME).timestamp()),
            "iat": int(now.timestamp()),
            "iss": self.issuer,
            "sub": facts.service_account_id,
        }
        if full:
            claims["google"] = {"compute_engine": facts.compute_engine(now)}
        return claims

    def token(
        self,
        audience: str,
        *,
        full: bool = True,
        instance: GCPInstance | None = None,
        **overrides: Any,
    ) -> str:
        """An identity token for *audience*, as the metadata server answers it; *overrides*
        replace claims (None removes one)."""
        claims = self.claims(audience, full=full, instance=instance)
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        with self._lock:
            kid, key = self._keys[0]
        return sign_compact(claims, key, alg="RS256", headers={"kid": kid})

    # --- serving ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The metadata server's URL (``--metadata-url``), without a trailing slash."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def jwks_url(self) -> str:
        """The URL of the JWK set, for a GCP provisioner's ``jwks_url``."""
        return self.url + JWKS_PATH

    def start(self) -> GCPMetadataServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": POLL_INTERVAL},
                name="gcp-metadata",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> GCPMetadataServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, path: str, query: Mapping[str, list[str]], flavor: str | None) -> _Answer:
        """The status, content type and body for ``GET path?query``."""
        if path == JWKS_PATH:
            return 200, "application/json", json.dumps(self.jwks()).encode()
        if not path.startswith("/computeMetadata/"):
            return 404, "text/plain", b"Not Found\n"
        if flavor != "Google":
            return 403, "text/plain", b"Missing required header: Metadata-Flavor\n"
        if path == IDENTITY_PATH:
            audience = (query.get("audience") or [""])[0]
            if not audience:
                return 400, "text/plain", b"non-empty audience parameter required\n"
            full = (query.get("format") or ["standard"])[0] == "full"
            with self._lock:
                self.audiences.append(audience)
            return 200, "text/html", self.token(audience, full=full).encode()
        facts = self.instance
        text = {
            "/computeMetadata/v1/instance/id": facts.instance_id,
            "/computeMetadata/v1/instance/name": facts.instance_name,
            "/computeMetadata/v1/instance/zone": (
                f"projects/{facts.project_number}/zones/{facts.zone}"
            ),
            "/computeMetadata/v1/project/project-id": facts.project_id,
        }.get(path)
        if text is None:
            return 404, "text/plain", b"Not Found\n"
        return 200, "application/text", text.encode()


_Answer = tuple[int, str, bytes]


def _system_now() -> datetime:
    return datetime.now(UTC)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    metadata: GCPMetadataServer


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "Metadata Server for VM"
    sys_version = ""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        status, content_type, body = self.server.metadata.answer(
            parts.path, parse_qs(parts.query), self.headers.get("Metadata-Flavor")
        )
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the answers, not a log."""


def main(argv: list[str] | None = None) -> int:
    """``python -m hosts.testing.metadata``: serve until interrupted."""
    defaults = GCPInstance()
    parser = argparse.ArgumentParser(
        prog="python -m hosts.testing.metadata",
        description="A loopback imitation of GCE's metadata server, for trying devid's GCP"
        " provisioner: set the provisioner's jwks_url to the JWK set URL it prints and"
        " pass --metadata-url URL to `devid ca certificate`.",
    )
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--project-id", default=defaults.project_id)
    parser.add_argument("--project-number", type=int, default=defaults.project_number)
    parser.add_argument("--zone", default=defaults.zone)
    parser.add_argument("--instance-id", default=defaults.instance_id)
    parser.add_argument("--instance-name", default=defaults.instance_name)
    parser.add_argument("--service-account", default=defaults.service_account_email)
    args = parser.parse_args(argv)
    instance = GCPInstance(
        project_id=args.project_id,
        project_number=args.project_number,
        zone=args.zone,
        instance_id=args.instance_id,
        instance_name=args.instance_name,
        service_account_email=args.service_account,
    )
    with GCPMetadataServer(instance, port=args.port) as server:
        print(f"metadata server: {server.url}", flush=True)
        print(f"JWK set:         {server.jwks_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
