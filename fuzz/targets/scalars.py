"""Durations and times (engine/durations.py: ``notBefore``/``notAfter``), certificate
serials (``hosts.http.wire.parse_serial``) and ACME renewal-info certificate identifiers
(``GET /acme/{provisioner}/renewal-info/{id}``, engine/acme/renewal.py)."""

from __future__ import annotations

from engine.acme.renewal import parse_cert_id
from engine.durations import parse_duration, parse_time, parse_time_or_duration
from fuzz.harness import NOW, attempt, text
from hosts.http.wire import parse_serial


def test_one_input(data: bytes) -> None:
    value = text(data)
    attempt(parse_time_or_duration, value, NOW)
    attempt(parse_duration, value)
    attempt(parse_time, value)
    attempt(parse_serial, value)
    attempt(parse_cert_id, value)
