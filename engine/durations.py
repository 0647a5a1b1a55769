"""Durations and times as operators and clients write them ("24h", "90m", RFC 3339)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .errors import BadRequest

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> timedelta:
    """Parse "1h30m", "24h", "5m", "30s", "7d"; BadRequest otherwise."""
    if not isinstance(text, str):
        raise BadRequest(f"duration must be a string like '24h', not {text!r}")
    s = text.strip()
    negative = s.startswith("-")
    if negative:
        s = s[1:]
    if not s:
        raise BadRequest("empty duration")
    pos = 0
    seconds = 0.0
    for match in _PART.finditer(s):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(s):
        raise BadRequest(f"invalid duration {text!r}; use forms like '24h', '90m', '1h30m', '7d'")
    try:
        return timedelta(seconds=-seconds if negative else seconds)
    except OverflowError:
        raise BadRequest(f"duration {text!r} is out of range") from None


def format_duration(delta: timedelta) -> str:
    total = int(delta.total_seconds())
    if total and total % 86400 == 0:
        return f"{total // 86400}d"
    if total and total % 3600 == 0:
        return f"{total // 3600}h"
    if total and total % 60 == 0:
        return f"{total // 60}m"
    return f"{total}s"


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise BadRequest(f"invalid time {text!r}; use RFC 3339") from None
    if value.tzinfo is None:
        raise BadRequest(f"time {text!r} has no time zone")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise BadRequest(f"time {text!r} is beyond the calendar") from None


def parse_time_or_duration(value: object, now: datetime) -> datetime | None:
    """A client-requested bound: empty, an RFC 3339 time, or a duration from *now*."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest("notBefore/notAfter must be strings")
    if value[:1].isdigit() and ("T" in value or "-" in value[1:]):
        return parse_time(value)
    try:
        return now + parse_duration(value)
    except OverflowError:
        raise BadRequest(f"{value!r} is beyond the calendar") from None
