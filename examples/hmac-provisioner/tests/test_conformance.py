"""The HMAC type passes devid's conformance suite, with its secret in a file or the
environment, and when tokens must be bound to their CSR."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hosts.testing import CredentialRequest, LocalCA, check_provisioner

Minter = Callable[[CredentialRequest], str]

NAMES = ["db.lab.example.com", "lab.example.com"]
OUTSIDE = ["www.example.com", "a.db.lab.example.com", "*.lab.example.com"]


def test_the_hmac_type_conforms(
    ca: LocalCA, table: dict[str, Any], mint: Minter, secret: bytes
) -> None:
    report = check_provisioner(ca, table, mint, names=NAMES, outside=OUTSIDE, secrets=[secret])
    skipped = {r.name for r in report.skipped}
    # It has no default table (write it by hand) and mints no tokens on the CA host.
    assert skipped == {"default-config"}
    assert report.outcome("public-view") == "passed"


def test_a_secret_from_the_environment_conforms_and_stays_hidden(
    ca: LocalCA, mint: Minter, secret: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_HMAC_SECRET", secret.decode())
    table = {"type": "HMAC", "name": "lab", "secret_env": "LAB_HMAC_SECRET"}
    table["allowed_names"] = ["*.lab.example.com"]
    check_provisioner(ca, table, mint, names=["db.lab.example.com"])


def test_tokens_bound_to_their_csr_conform(
    ca: LocalCA, table: dict[str, Any], mint: Minter, secret: bytes
) -> None:
    table = {**table, "require_csr_binding": True}
    check_provisioner(ca, table, mint, names=NAMES, outside=OUTSIDE, secrets=[secret])
