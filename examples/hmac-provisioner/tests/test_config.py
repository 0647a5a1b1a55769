"""A [[provisioners]] table the HMAC type cannot use stops loading, saying why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hosts.testing import LocalCA
from plugins.api import ConfigurationError


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"secret_env": "LAB_HMAC_SECRET"}, "exactly one of secret_file and secret_env"),
        ({"secret_file": None}, "exactly one of secret_file and secret_env"),
        ({"secret_file": "secrets/missing.key"}, "cannot read secret_file"),
        ({"allowed_names": []}, "allowed_names must be a non-empty list"),
        ({"allowed_names": ["db.*.example.com"]}, "only a leftmost"),
        ({"allowed_names": ["10.0.0.1"]}, "is not a DNS name"),
        ({"max_token_lifetime": "2h"}, "between 1s and 1h"),
        ({"issuer": "attestation-ca"}, "unknown issuer"),
        ({"secrets": "typo"}, r"unknown option\(s\) secrets"),
    ],
)
def test_a_bad_table_is_refused(
    ca: LocalCA, table: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    changed = {k: v for k, v in {**table, **change}.items() if v is not None}
    with pytest.raises(ConfigurationError, match=message):
        ca.add_provisioner(changed)
    assert ca.provisioner_table("lab") is None  # devid.toml is as it was


def test_a_short_secret_is_refused(
    ca: LocalCA, table: dict[str, Any], write_secret: Callable[..., str]
) -> None:
    table["secret_file"] = write_secret(b"too short")
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        ca.add_provisioner(table)


def test_a_secret_file_others_can_read_is_refused(
    ca: LocalCA, table: dict[str, Any], write_secret: Callable[..., str], secret: bytes
) -> None:
    table["secret_file"] = write_secret(secret, mode=0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        ca.add_provisioner(table)


def test_an_unset_environment_variable_is_refused(
    ca: LocalCA, table: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LAB_HMAC_SECRET", raising=False)
    del table["secret_file"]
    table["secret_env"] = "LAB_HMAC_SECRET"
    with pytest.raises(ConfigurationError, match="LAB_HMAC_SECRET is not set"):
        ca.add_provisioner(table)
