"""Hypothesis settings for the property tests.

The ``devid`` profile keeps each file to a few seconds: a fixed number of examples,
no deadline (the first call of a parser can be slow), and no example database (the
fuzz corpus in fuzz/corpus/ is where interesting inputs are kept). Run more with
``pytest --hypothesis-profile=thorough tests/property``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("devid", max_examples=100, **_COMMON)
settings.register_profile("thorough", max_examples=2_000, **_COMMON)
settings.load_profile("devid")
