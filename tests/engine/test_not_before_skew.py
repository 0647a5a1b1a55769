"""A requested notBefore stays within the provisioner's ``skew`` of the CA's clock.

A 5-minute token must not buy a certificate that starts in a year (and lives the
provisioner's full duration from then), nor one dated long before it was asked for.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509

from engine.errors import BadRequest, ConfigurationError
from engine.pipeline import Issuer, SignRequest, issue_certificate
from engine.policy import DurationLimits
from engine.ports import CountingRandom, FrozenClock
from tests.engine.test_engine_pipeline import NOW, issue, make_csr, make_issuer, make_policy


@pytest.fixture
def issuer() -> Issuer:
    return make_issuer(not_before=NOW - timedelta(days=30), lifetime=timedelta(days=3650))


@pytest.mark.parametrize(
    "ahead", [timedelta(hours=8760), timedelta(days=1), timedelta(minutes=5, seconds=1)]
)
def test_not_before_further_ahead_than_the_skew_is_refused(
    issuer: Issuer, ahead: timedelta
) -> None:
    with pytest.raises(BadRequest, match=r"notBefore .* more than 5m ahead"):
        issue(issuer=issuer, not_before=NOW + ahead)


@pytest.mark.parametrize(
    "behind", [timedelta(days=365), timedelta(hours=2), timedelta(minutes=5, seconds=1)]
)
def test_not_before_further_back_than_the_skew_is_refused(
    issuer: Issuer, behind: timedelta
) -> None:
    with pytest.raises(BadRequest, match=r"notBefore .* more than 5m in the past"):
        issue(issuer=issuer, not_before=NOW - behind, not_after=NOW + timedelta(hours=1))


@pytest.mark.parametrize("offset", [timedelta(minutes=5), timedelta(minutes=-5), timedelta(0)])
def test_not_before_within_the_skew_is_used(issuer: Issuer, offset: timedelta) -> None:
    cert = issue(issuer=issuer, not_before=NOW + offset)
    assert cert.not_valid_before_utc == NOW + offset


def test_the_skew_is_the_provisioners(issuer: Issuer) -> None:
    policy = make_policy(durations=DurationLimits(skew=timedelta(hours=2)))
    cert = issue(policy=policy, issuer=issuer, not_before=NOW + timedelta(hours=1))
    assert cert.not_valid_before_utc == NOW + timedelta(hours=1)
    with pytest.raises(BadRequest, match="more than 2h ahead"):
        issue(policy=policy, issuer=issuer, not_before=NOW + timedelta(hours=3))
    strict = make_policy(durations=DurationLimits(skew=timedelta(0)))
    with pytest.raises(BadRequest, match="more than 0s ahead"):
        issue(policy=strict, issuer=issuer, not_before=NOW + timedelta(seconds=1))


def test_the_skew_counts_from_when_the_bounds_were_requested(issuer: Issuer) -> None:
    """An ACME order's notBefore was checked when the order was made; finalize may
    come hours later and must not refuse it then."""
    ordered_at = NOW - timedelta(hours=3)
    request = SignRequest(
        csr=make_csr(sans=["svc.example.com"]),
        not_before=ordered_at + timedelta(minutes=2),
        requested_at=ordered_at,
    )
    issued = issue_certificate(
        request, make_policy(), issuer, FrozenClock(NOW), CountingRandom(b"x")
    )
    cert: x509.Certificate = issued.certificate
    assert cert.not_valid_before_utc == ordered_at + timedelta(minutes=2)


def test_a_negative_skew_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="skew"):
        DurationLimits(skew=timedelta(seconds=-1))


def test_the_skew_is_read_from_the_provisioners_durations_table() -> None:
    from plugins.options import Options

    read = Options("[provisioners]", {"durations": {"skew": "1h"}}).durations(DurationLimits())
    assert read.skew == timedelta(hours=1)
    default = Options("[provisioners]", {}).durations(DurationLimits())
    assert default.skew == timedelta(minutes=5)
    with pytest.raises(ConfigurationError, match="skew"):
        Options("[provisioners]", {"durations": {"skew": "2d"}}).durations(DurationLimits())
