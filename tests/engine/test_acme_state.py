"""engine.acme._state: every (state, event) pair of every machine, against RFC 8555 7.1.6."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pytest

from engine.acme import _state
from engine.acme._state import Event
from engine.acme.problems import ACMEProblem
from engine.acme.records import AccountStatus, AuthorizationStatus, ChallengeStatus, OrderStatus

A, R, Z, C = AccountStatus, OrderStatus, AuthorizationStatus, ChallengeStatus

# The allowed moves, written out from RFC 8555's diagrams; everything else is refused.
EXPECTED: dict[str, tuple[Mapping[Any, Any], type, dict[tuple[Any, Event], Any]]] = {
    "account": (
        _state.ACCOUNT,
        AccountStatus,
        {(A.VALID, Event.DEACTIVATE): A.DEACTIVATED, (A.VALID, Event.REVOKE): A.REVOKED},
    ),
    "order": (
        _state.ORDER,
        OrderStatus,
        {
            (R.PENDING, Event.AUTHORIZED): R.READY,
            (R.PENDING, Event.FAILED): R.INVALID,
            (R.PENDING, Event.EXPIRE): R.INVALID,
            (R.READY, Event.EXPIRE): R.INVALID,
            (R.READY, Event.FINALIZE): R.PROCESSING,
            (R.PROCESSING, Event.ISSUED): R.VALID,
            (R.PROCESSING, Event.FAILED): R.INVALID,
        },
    ),
    "authorization": (
        _state.AUTHORIZATION,
        AuthorizationStatus,
        {
            (Z.PENDING, Event.VALIDATED): Z.VALID,
            (Z.PENDING, Event.FAILED): Z.INVALID,
            (Z.PENDING, Event.DEACTIVATE): Z.DEACTIVATED,
            (Z.VALID, Event.DEACTIVATE): Z.DEACTIVATED,
            (Z.PENDING, Event.EXPIRE): Z.EXPIRED,
            (Z.VALID, Event.EXPIRE): Z.EXPIRED,
            (Z.VALID, Event.REVOKE): Z.REVOKED,
        },
    ),
    "challenge": (
        _state.CHALLENGE,
        ChallengeStatus,
        {
            (C.PENDING, Event.RESPOND): C.PROCESSING,
            (C.PENDING, Event.VALIDATED): C.VALID,
            (C.PENDING, Event.FAILED): C.INVALID,
            (C.PROCESSING, Event.VALIDATED): C.VALID,
            (C.PROCESSING, Event.FAILED): C.INVALID,
        },
    ),
}

PAIRS = [
    (name, state, event)
    for name, (_, states, _) in EXPECTED.items()
    for state, event in itertools.product(list(states), list(Event))
]


@pytest.mark.parametrize(("machine", "state", "event"), PAIRS)
def test_every_pair_is_allowed_exactly_when_the_rfc_allows_it(
    machine: str, state: Any, event: Event
) -> None:
    table, _, expected = EXPECTED[machine]
    wanted = expected.get((state, event))
    assert _state.next_state(table, state, event) == wanted
    if wanted is None:
        with pytest.raises(ACMEProblem, match="refused"):
            _state.advance(table, state, event, lambda: ACMEProblem("malformed", "refused"))
    else:
        assert _state.advance(table, state, event, lambda: ACMEProblem("malformed", "no")) is wanted


FINAL = {
    "account": {A.DEACTIVATED, A.REVOKED},
    "order": {R.VALID, R.INVALID},
    "authorization": {Z.INVALID, Z.DEACTIVATED, Z.EXPIRED, Z.REVOKED},
    "challenge": {C.VALID, C.INVALID},
}


@pytest.mark.parametrize("machine", list(EXPECTED))
def test_final_states_have_no_way_out(machine: str) -> None:
    table = EXPECTED[machine][0]
    for state in FINAL[machine]:
        assert all(table.get((state, event)) is None for event in Event), state
