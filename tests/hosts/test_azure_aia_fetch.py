"""hosts.remote.RemoteKeySets.certificate against a loopback HTTP server and a frozen clock:
the certificate at a URL (the AIA caIssuers URLs the Azure provisioner fetches
intermediate CAs from) as DER, PEM converted, kept a day by URL, a failure retried only
after the back-off, and answers that are not one certificate, too large or redirects
refused with their reason."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from engine.errors import ServiceUnavailable
from engine.ports import FrozenClock
from hosts.remote import RemoteKeySets
from hosts.testing.keys import new_key, self_signed_certificate
from tests.hosts.test_remote_keysets import Answer, Provider

CERTIFICATE = self_signed_certificate(new_key(), "devid Test Issuing CA")
DER = CERTIFICATE.public_bytes(Encoding.DER)


@pytest.fixture
def server() -> Iterator[Provider]:
    served = Provider()
    yield served
    served.stop()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def remote(clock: FrozenClock) -> Iterator[RemoteKeySets]:
    keysets = RemoteKeySets(clock, timeout=2.0)
    yield keysets
    keysets.close()


def test_a_der_certificate_is_fetched_once_and_kept_a_day(
    server: Provider, remote: RemoteKeySets, clock: FrozenClock
) -> None:
    server.answers["/ca.crt"] = Answer(headers={"Cache-Control": "no-store"}, body=DER)
    url = server.url("/ca.crt")
    assert remote.certificate(url) == DER
    clock.advance(timedelta(hours=23))
    assert remote.certificate(url) == DER
    assert server.requests["/ca.crt"] == 1
    clock.advance(timedelta(hours=1, seconds=1))
    assert remote.certificate(url) == DER
    assert server.requests["/ca.crt"] == 2


def test_a_pem_certificate_is_returned_as_der(server: Provider, remote: RemoteKeySets) -> None:
    server.answers["/ca.pem"] = Answer(body=CERTIFICATE.public_bytes(Encoding.PEM))
    assert remote.certificate(server.url("/ca.pem")) == DER


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Answer(404), "HTTP 404"),
        (Answer(body=b"not a certificate"), "not a certificate"),
        (Answer(body=CERTIFICATE.public_bytes(Encoding.PEM) * 2), "2 certificates, not one"),
        (Answer(body=b"0" * (64 * 1024 + 1)), "larger than 64 KiB"),
        (Answer(302, headers={"Location": "http://127.0.0.1:1/x.crt"}), "not followed"),
    ],
)
def test_what_is_not_one_certificate_is_a_503_with_its_reason(
    server: Provider, remote: RemoteKeySets, answer: Answer, reason: str
) -> None:
    server.answers["/ca.crt"] = answer
    with pytest.raises(ServiceUnavailable, match=reason) as unavailable:
        remote.certificate(server.url("/ca.crt"))
    assert server.url("/ca.crt") in unavailable.value.detail


def test_a_failure_is_retried_only_after_the_back_off(
    server: Provider, remote: RemoteKeySets, clock: FrozenClock
) -> None:
    url = server.url("/ca.crt")
    with pytest.raises(ServiceUnavailable, match="HTTP 404"):
        remote.certificate(url)
    server.answers["/ca.crt"] = Answer(body=DER)
    with pytest.raises(ServiceUnavailable, match="HTTP 404"):
        remote.certificate(url)
    assert server.requests["/ca.crt"] == 1
    clock.advance(timedelta(seconds=10))
    assert remote.certificate(url) == DER
    assert server.requests["/ca.crt"] == 2


@pytest.mark.parametrize(
    "url",
    ["ftp://www.microsoft.com/ca.crt", "http://user:pw@www.microsoft.com/ca.crt", "/ca.crt"],
)
def test_only_http_and_https_urls_without_credentials(remote: RemoteKeySets, url: str) -> None:
    with pytest.raises(ServiceUnavailable, match="certificate URL"):
        remote.certificate(url)
