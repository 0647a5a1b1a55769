"""The rule every fuzz target and property test applies (fuzz/harness.py): only a
refusal the hosts answer with a 4xx passes; anything else fails the input."""

from __future__ import annotations

import logging
from typing import NoReturn

import pytest

from engine.acme.problems import ACMEProblem
from engine.errors import BadRequest, ConfigurationError, Forbidden
from fuzz.harness import BadAnswer, UnexpectedLog, attempt


def _raise(exc: Exception) -> NoReturn:
    raise exc


def test_a_4xx_refusal_passes_and_a_result_comes_back() -> None:
    assert attempt(_raise, BadRequest("no")) is None
    assert attempt(_raise, Forbidden("no")) is None
    assert attempt(_raise, ACMEProblem("malformed", "no")) is None
    assert attempt(int, "7") == 7


@pytest.mark.parametrize(
    "exc",
    [ValueError("x"), KeyError("x"), TypeError("x"), RecursionError(), ConfigurationError("x")],
)
def test_any_other_exception_fails_the_input(exc: Exception) -> None:
    with pytest.raises(type(exc)):
        attempt(_raise, exc)


def test_a_refusal_answered_with_a_5xx_fails_the_input() -> None:
    with pytest.raises(BadAnswer):
        attempt(_raise, ACMEProblem("serverInternal", "oops"))


def test_an_error_devid_logs_while_refusing_fails_the_input() -> None:
    def refuse_after_logging() -> None:
        logging.getLogger("devid.attestation").error("unexpected error verifying")
        raise BadRequest("refused")

    with pytest.raises(UnexpectedLog, match="unexpected error verifying"):
        attempt(refuse_after_logging)
    assert attempt(_raise, BadRequest("no")) is None  # the trap is empty again
