"""Durations, times and serials as clients write them: any text gives a value or
BadRequest, never OverflowError, ValueError or another exception."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from engine.durations import parse_time_or_duration
from fuzz.targets import scalars

from .mutations import corpus_inputs, mutated

_NUMBER = st.one_of(
    st.integers(0, 10**30).map(str),
    st.floats(0, 1e30, allow_nan=False).map(repr),
)


@given(st.text(max_size=40))
def test_any_text(value: str) -> None:
    scalars.test_one_input(value.encode())


@given(mutated(corpus_inputs("scalars")))
def test_byte_mutations_of_valid_values(data: bytes) -> None:
    scalars.test_one_input(data)


@given(
    st.lists(st.tuples(_NUMBER, st.sampled_from(["ms", "s", "m", "h", "d"])), max_size=4),
    st.booleans(),
)
def test_any_duration_of_any_size(parts: list[tuple[str, str]], negative: bool) -> None:
    text = ("-" if negative else "") + "".join(number + unit for number, unit in parts)
    scalars.test_one_input(text.encode())


@given(st.datetimes(timezones=st.just(UTC)), st.sampled_from(["T", " "]))
def test_any_rfc_3339_time_is_read_back(moment: datetime, separator: str) -> None:
    text = moment.isoformat(sep=separator).replace("+00:00", "Z")
    assert parse_time_or_duration(text, datetime(2025, 6, 1, tzinfo=UTC)) == moment
    scalars.test_one_input(text.encode())


@given(st.integers(-(10**80), 10**80), st.sampled_from(["{}", "0x{:x}", "0X{:X}", " {} "]))
def test_any_serial(number: int, form: str) -> None:
    scalars.test_one_input(form.format(number).encode())
