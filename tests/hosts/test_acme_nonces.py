"""hosts.service.acme.nonces: one nonce book per process, behind a lock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from engine.acme.problems import ACMEProblem
from engine.ports import FrozenClock
from hosts.service.acme import nonces as acme_nonces
from hosts.service.acme.nonces import ReplayNonces

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_issue_and_redeem_once() -> None:
    nonces = ReplayNonces(FrozenClock(NOW))
    value = nonces.issue()
    nonces.redeem(value, NOW)
    with pytest.raises(ACMEProblem, match="used already"):
        nonces.redeem(value, NOW)
    assert nonces.issued == 1


def test_two_instances_never_share_nonces() -> None:
    """Two workers (or a restart): each refuses the other's nonces."""
    clock = FrozenClock(NOW)
    one, two = ReplayNonces(clock), ReplayNonces(clock)
    a, b = one.issue(), two.issue()
    for nonces, value in ((one, b), (two, a)):
        with pytest.raises(ACMEProblem) as excinfo:
            nonces.redeem(value, NOW)
        assert excinfo.value.problem == "badNonce"
    one.redeem(a, NOW)
    two.redeem(b, NOW)


def test_expiry_follows_the_clock() -> None:
    clock = FrozenClock(NOW)
    nonces = ReplayNonces(clock, lifetime=timedelta(seconds=30))
    value = nonces.issue()
    clock.advance(timedelta(seconds=30))
    with pytest.raises(ACMEProblem, match="expired"):
        nonces.redeem(value, clock.now())


def test_a_forked_child_gets_a_new_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A book copied by fork must not accept the parent's nonces (nor its siblings')."""
    nonces = ReplayNonces(FrozenClock(NOW))
    parents = nonces.issue()
    real = acme_nonces.os.getpid()
    monkeypatch.setattr(acme_nonces.os, "getpid", lambda: real + 1)
    with pytest.raises(ACMEProblem, match="unknown here"):
        nonces.redeem(parents, NOW)
    childs = nonces.issue()
    nonces.redeem(childs, NOW)


def test_concurrent_redeems_accept_each_nonce_exactly_once() -> None:
    nonces = ReplayNonces(FrozenClock(NOW))
    values = [nonces.issue() for _ in range(200)]
    accepted: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for value in values:
            try:
                nonces.redeem(value, NOW)
            except ACMEProblem:
                continue
            with lock:
                accepted.append(value)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(accepted) == sorted(values)
