"""engine.durations: how operators write durations and how clients write notBefore/notAfter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from engine.durations import format_duration, parse_duration, parse_time, parse_time_or_duration
from engine.errors import BadRequest

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        (" 5m ", timedelta(minutes=5)),
        ("-5m", timedelta(minutes=-5)),
    ],
)
def test_parse_duration_accepts_go_style_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "-", "5", "m", "5x", "1h 30m", "h1", "5m!", "1e3s", "five"])
def test_parse_duration_rejects_anything_else(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_duration(text)


@pytest.mark.parametrize("value", [5, 5.0, None, ["5m"]])
def test_parse_duration_rejects_non_strings(value: Any) -> None:
    with pytest.raises(BadRequest, match="string"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(days=30), "30d"),
        (timedelta(hours=24), "1d"),
        (timedelta(hours=5), "5h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=61), "61s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration_uses_the_largest_whole_unit(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
    assert parse_duration(text) == delta


def test_parse_time_reads_rfc3339_with_z_or_offset_into_utc() -> None:
    assert parse_time("2030-06-01T12:00:00Z") == NOW
    assert parse_time("2030-06-01T14:00:00+02:00") == NOW
    assert parse_time("2030-06-01T14:00:00+02:00").tzinfo == UTC


def test_parse_time_refuses_times_without_a_zone() -> None:
    with pytest.raises(BadRequest, match="time zone"):
        parse_time("2030-06-01T12:00:00")


@pytest.mark.parametrize("text", ["yesterday", "2030-13-01T00:00:00Z", ""])
def test_parse_time_refuses_garbage(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_time(text)


def test_requested_bound_may_be_empty() -> None:
    assert parse_time_or_duration(None, NOW) is None
    assert parse_time_or_duration("", NOW) is None


def test_requested_bound_may_be_a_duration_from_now() -> None:
    assert parse_time_or_duration("2h", NOW) == NOW + timedelta(hours=2)
    assert parse_time_or_duration("-1m", NOW) == NOW - timedelta(minutes=1)


def test_requested_bound_may_be_an_absolute_time() -> None:
    other_zone = timezone(timedelta(hours=-5))
    text = (NOW + timedelta(hours=3)).astimezone(other_zone).isoformat()
    assert parse_time_or_duration(text, NOW) == NOW + timedelta(hours=3)


@pytest.mark.parametrize("value", [3600, 1.5, True, ["1h"], {"h": 1}])
def test_requested_bound_must_be_a_string(value: Any) -> None:
    with pytest.raises(BadRequest):
        parse_time_or_duration(value, NOW)


def test_requested_bound_that_is_neither_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        parse_time_or_duration("tomorrow", NOW)
