"""Fuzz targets for every parser a client reaches without credentials.

Each module in :mod:`fuzz.targets` has ``test_one_input(data: bytes)``: it feeds
*data* to one parser (and to what the host runs on its result before any
credential is checked) and lets through only the refusals the hosts answer with
a 4xx (:class:`engine.errors.ProtocolError`, with a body that can be written).
Anything else it raises is a crash: on a server it would be a 500 with a
traceback. ``python -m fuzz`` runs the targets under atheris (``make fuzz``);
tests/test_fuzz_targets.py runs each over its corpus in ``fuzz/corpus/<target>/``;
tests/property/ drives the same targets with Hypothesis.
"""

from __future__ import annotations

#: Every target, in the order ``make fuzz`` runs them (module names in fuzz.targets).
TARGETS = (
    "json_body",
    "scalars",
    "jose",
    "acme_jws",
    "csr",
    "tpm",
    "attest",
    "device_attest",
    "x5c",
    "acme_validation",
    "scep",
    "oidc",
    "cloud",
)
