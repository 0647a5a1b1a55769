"""What escapes a check that fails in an unexpected way: a serverInternal problem
that names the error's type and never carries its message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio

from hosts.validation import dial
from hosts.validation.http01 import validate_http01
from hosts.validation.tlsalpn01 import validate_tlsalpn01

from .servers import KEYAUTH, SECRET, TOKEN, config_for, problem_of

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.challtestsrv import ChallTestSrv

pytest_plugins = ["tests.challtestsrv"]


async def test_unexpected_errors_become_problems(
    challtestsrv: ChallTestSrv, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(addr: Any, port: int) -> trio.SocketStream:
        raise RuntimeError("boom")

    monkeypatch.setattr(dial, "open_tcp", broken)
    err = await problem_of(
        validate_tlsalpn01("dns", "x.devid.test", KEYAUTH, config_for(challtestsrv))
    )
    assert err.problem == "serverInternal"
    assert "unexpected RuntimeError" in err.detail


async def test_unexpected_errors_do_not_carry_their_message(
    challtestsrv: ChallTestSrv, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(addr: Any, port: int) -> trio.SocketStream:
        raise RuntimeError(SECRET)

    monkeypatch.setattr(dial, "open_tcp", broken)
    err = await problem_of(
        validate_http01("dns", "x.devid.test", TOKEN, KEYAUTH, config_for(challtestsrv))
    )
    assert err.problem == "serverInternal"
    assert SECRET not in err.detail
