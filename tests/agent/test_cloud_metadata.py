"""The client's half of the cloud provisioners: the instance identity token fetched from
a metadata server (``agent.cloud``), against the loopback imitation of GCE's
(``hosts.testing.metadata``) and against servers that answer wrongly."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agent.cloud import (
    GCP_IDENTITY_PATH,
    GCP_METADATA_ENV,
    GCP_METADATA_URL,
    MAX_TOKEN_BYTES,
    CloudError,
    gcp_audience,
    gcp_identity_token,
    gcp_metadata_url,
)
from engine.jose import parse_compact, public_key_from_jwk
from hosts.testing.metadata import POLL_INTERVAL, GCPInstance, GCPMetadataServer
from hosts.testing.ports import LOOPBACK

AUDIENCE = "https://ca.example.com:8443/1.0/sign#gcp"
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
INSTANCE = GCPInstance(
    project_id="my-project",
    project_number=42,
    zone="europe-west1-b",
    instance_id="1234567890",
    instance_name="web-1",
    created_at=CREATED,
    service_account_email="web@my-project.iam.gserviceaccount.com",
    service_account_id="1000000000000000001",
)


@pytest.fixture
def metadata() -> Iterator[GCPMetadataServer]:
    with GCPMetadataServer(INSTANCE) as server:
        yield server


# --- the loopback metadata server -----------------------------------------------------------


def test_the_identity_token_is_signed_by_the_jwk_set_and_states_the_instance(
    metadata: GCPMetadataServer,
) -> None:
    token = gcp_identity_token(AUDIENCE, metadata.url)
    assert metadata.audiences == [AUDIENCE]
    jws = parse_compact(token)
    assert jws.alg == "RS256" and jws.header["kid"] == metadata.kid
    keys = httpx.get(metadata.jwks_url, timeout=5).json()["keys"]
    (jwk,) = [k for k in keys if k["kid"] == metadata.kid]
    claims = jws.verify(public_key_from_jwk(jwk))
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["aud"] == AUDIENCE
    assert claims["azp"] == claims["sub"] == "1000000000000000001"
    assert claims["email"] == "web@my-project.iam.gserviceaccount.com"
    assert claims["email_verified"] is True
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["google"]["compute_engine"] == {
        "instance_creation_timestamp": int(CREATED.timestamp()),
        "instance_id": "1234567890",
        "instance_name": "web-1",
        "project_id": "my-project",
        "project_number": 42,
        "zone": "europe-west1-b",
    }


def test_the_server_wants_the_flavor_header_and_an_audience(metadata: GCPMetadataServer) -> None:
    url = metadata.url + GCP_IDENTITY_PATH
    bare = httpx.get(url, params={"audience": AUDIENCE}, timeout=5)
    assert bare.status_code == 403
    assert bare.headers["Metadata-Flavor"] == "Google"
    flavored = {"Metadata-Flavor": "Google"}
    assert httpx.get(url, headers=flavored, timeout=5).status_code == 400
    standard = httpx.get(url, params={"audience": AUDIENCE}, headers=flavored, timeout=5)
    assert standard.status_code == 200 and standard.headers["Metadata-Flavor"] == "Google"
    assert "google" not in parse_compact(standard.text).claims()  # format=full only
    name = httpx.get(metadata.url + "/computeMetadata/v1/instance/name", headers=flavored)
    assert name.text == "web-1"
    assert (
        httpx.get(metadata.url + "/computeMetadata/v1/nothing", headers=flavored).status_code == 404
    )


def test_instance_facts_and_keys_change_while_it_serves(metadata: GCPMetadataServer) -> None:
    old_kid = metadata.kid
    metadata.instance = GCPInstance(instance_id="99", instance_name="web-2")
    new_kid = metadata.rotate_key()
    jws = parse_compact(gcp_identity_token(AUDIENCE, metadata.url))
    assert jws.header["kid"] == new_kid != old_kid
    facts = jws.claims()["google"]["compute_engine"]
    assert (facts["instance_id"], facts["instance_name"]) == ("99", "web-2")
    # Without a creation time, the instance was created a minute before the token.
    assert facts["instance_creation_timestamp"] == jws.claims()["iat"] - 60
    assert {k["kid"] for k in metadata.jwks()["keys"]} == {old_kid, new_kid}


def test_a_token_minted_without_a_request_can_be_changed() -> None:
    server = GCPMetadataServer(INSTANCE)
    try:
        claims = parse_compact(server.token(AUDIENCE, iss="https://evil", email=None)).claims()
    finally:
        server.stop()
    assert claims["iss"] == "https://evil" and "email" not in claims


# --- the client -----------------------------------------------------------------------------


def test_the_audience_is_the_sign_url_with_the_provisioner() -> None:
    assert gcp_audience("https://ca.example.com:8443/", "gcp") == AUDIENCE
    assert gcp_audience("https://ca.example.com:8443", "gcp") == AUDIENCE


def test_the_metadata_url_comes_from_the_option_the_environment_or_gce(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(GCP_METADATA_ENV, raising=False)
    assert gcp_metadata_url() == GCP_METADATA_URL == "http://metadata.google.internal"
    monkeypatch.setenv(GCP_METADATA_ENV, "http://127.0.0.1:9/")
    assert gcp_metadata_url() == "http://127.0.0.1:9"
    assert gcp_metadata_url("http://127.0.0.1:8/") == "http://127.0.0.1:8"
    with pytest.raises(CloudError, match="'ftp://x' is not an http:// or https:// URL"):
        gcp_metadata_url("ftp://x")


def test_the_environment_points_the_client_at_the_server(
    metadata: GCPMetadataServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GCP_METADATA_ENV, metadata.url)
    assert parse_compact(gcp_identity_token(AUDIENCE)).claims()["aud"] == AUDIENCE


Respond = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextmanager
def answering(respond: Respond) -> Iterator[str]:
    """A loopback HTTP server whose every GET *respond* answers; its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            respond(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
    )
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def reply(status: int, body: bytes, *, flavor: bool = True) -> Respond:
    def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        if flavor:
            handler.send_header("Metadata-Flavor", "Google")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def test_an_answer_without_the_flavor_header_is_refused() -> None:
    """A server that is not a metadata server (a captive portal, a proxy) answers 200."""
    token = GCPMetadataServer(INSTANCE)
    try:
        body = token.token(AUDIENCE).encode()
    finally:
        token.stop()
    with answering(reply(200, body, flavor=False)) as url, pytest.raises(CloudError) as caught:
        gcp_identity_token(AUDIENCE, url)
    assert str(caught.value) == (
        f"{url} is not a GCP metadata server: its answer (200) has no Metadata-Flavor: Google"
        " header"
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (reply(404, b"Not Found\n"), "refused the identity token (404: Not Found)"),
        (reply(500, b""), "refused the identity token (500)"),
        (reply(200, b"<html>hello</html>"), "answered something that is not a JWT"),
        (reply(200, b"a.b"), "answered something that is not a JWT"),
        (reply(200, b"a..c"), "answered something that is not a JWT"),
        (reply(200, b"a.b c.d"), "answered something that is not a JWT"),
        (reply(200, "\u00e9.b.c".encode()), "answered something that is not a JWT"),
        (reply(200, b"a.b." + b"c" * MAX_TOKEN_BYTES), f"longer than {MAX_TOKEN_BYTES} bytes"),
    ],
    ids=["404", "500", "html", "two-parts", "empty-part", "space", "not-ascii", "too-long"],
)
def test_wrong_answers_give_clear_errors(answer: Respond, message: str) -> None:
    with answering(answer) as url, pytest.raises(CloudError) as caught:
        gcp_identity_token(AUDIENCE, url)
    assert message in str(caught.value)
    assert url in str(caught.value)


def test_a_redirect_is_not_followed() -> None:
    def redirect(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Metadata-Flavor", "Google")
        handler.send_header("Location", "http://203.0.113.1/")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with answering(redirect) as url, pytest.raises(CloudError, match=r"refused .* \(302\)"):
        gcp_identity_token(AUDIENCE, url)


def test_no_metadata_server_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port bound and not listening: connections are refused
        sock.bind((LOOPBACK, 0))
        url = f"http://{LOOPBACK}:{sock.getsockname()[1]}"
        with pytest.raises(CloudError) as caught:
            gcp_identity_token(AUDIENCE, url)
    assert str(caught.value).startswith(f"not on GCP: the metadata server at {url} does not answer")
    assert "--metadata-url" in str(caught.value)


def test_a_silent_metadata_server_is_bounded() -> None:
    """A server that accepts and never answers: the client gives up after its timeout."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(1)
        url = f"http://{LOOPBACK}:{sock.getsockname()[1]}"
        with pytest.raises(CloudError) as caught:
            gcp_identity_token(AUDIENCE, url, timeout=0.2)
    assert str(caught.value) == (
        f"not on GCP: the metadata server at {url} does not answer (no answer within 0.2 s;"
        " pass --metadata-url or set $DEVID_GCP_METADATA_URL for another)"
    )


def test_the_token_lives_an_hour_from_the_servers_clock() -> None:
    moment = datetime(2026, 6, 1, 12, tzinfo=UTC)
    server = GCPMetadataServer(INSTANCE, now=lambda: moment)
    try:
        claims = parse_compact(server.token(AUDIENCE)).claims()
    finally:
        server.stop()
    assert claims["iat"] == int(moment.timestamp())
    assert claims["exp"] == int((moment + timedelta(hours=1)).timestamp())
