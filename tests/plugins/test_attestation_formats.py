"""The three built-in device-attest-01 formats as plugins, and their handling of hostile CBOR.

Whatever a client puts in attStmt (wrong CBOR types, missing fields, huge
values), every format answers with the ACME problem ``badAttestationStatement``
and never another exception (SECURITY.md: every parser is fuzzed; bad input is
a 4xx, never a 500).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.acme.problems import ACMEProblem
from hosts.cli import main
from plugins.attestation import devid_attestation_formats
from plugins.attestation.apple import AppleFormat
from plugins.attestation.base import AttestationContext, AttestationFormat
from plugins.attestation.step import StepFormat
from plugins.attestation.tpm import TPMFormat
from plugins.manager import PluginManager

NOW = datetime(2025, 6, 1, tzinfo=UTC)
CONTEXT = AttestationContext(now=NOW, roots=())
KEY_AUTHORIZATION = "token-123.thumbprint-456"
JUNK_DER = b"\x30\x03\x02\x01\x01"

# A statement of each format with every field present and of the right CBOR type
# (the contents are junk): each case below spoils one thing.
BASE: dict[str, dict[str, Any]] = {
    "tpm": {
        "ver": "2.0",
        "alg": -257,
        "x5c": [JUNK_DER],
        "sig": b"\x01" * 256,
        "certInfo": b"\xff\x54\x43\x47" + b"\x00" * 60,
        "pubArea": b"\x00\x01" + b"\x00" * 60,
    },
    "apple": {"x5c": [JUNK_DER, JUNK_DER]},
    "step": {"alg": -7, "sig": b"\x30\x06\x02\x01\x01\x02\x01\x01", "x5c": [JUNK_DER]},
}
FORMATS: dict[str, AttestationFormat] = {
    "tpm": TPMFormat(),
    "apple": AppleFormat(),
    "step": StepFormat(),
}

MB = 1024 * 1024

# (name, fields it applies to, the replacement value); "<delete>" removes the field.
DELETE = object()
FIELD_CASES: list[tuple[str, str, object]] = [
    ("x5c missing", "x5c", DELETE),
    ("x5c is bytes", "x5c", JUNK_DER),
    ("x5c is a map", "x5c", {"0": JUNK_DER}),
    ("x5c is text", "x5c", "MIIB..."),
    ("x5c is empty", "x5c", []),
    ("x5c holds text", "x5c", ["MIIB..."]),
    ("x5c holds an int", "x5c", [42]),
    ("x5c holds a list", "x5c", [[JUNK_DER]]),
    ("x5c holds None", "x5c", [None]),
    ("x5c holds non-DER", "x5c", [b"not a certificate"]),
    ("x5c holds a huge item", "x5c", [b"\x30" * MB]),
    ("x5c is too long", "x5c", [JUNK_DER] * 10_000),
    ("sig missing", "sig", DELETE),
    ("sig is text", "sig", "c2ln"),
    ("sig is an int", "sig", 7),
    ("sig is a list", "sig", [b"\x01"]),
    ("sig is empty", "sig", b""),
    ("sig is huge", "sig", b"\x01" * MB),
    ("alg missing", "alg", DELETE),
    ("alg is text", "alg", "RS256"),
    ("alg is a float", "alg", -257.0),
    ("alg is a bool", "alg", True),
    ("alg is huge", "alg", -(2**200)),
    ("alg is unknown", "alg", 12345),
    ("alg is SHA-1", "alg", -65535),
    ("ver missing", "ver", DELETE),
    ("ver is a float", "ver", 2.0),
    ("ver is 1.2", "ver", "1.2"),
    ("ver is bytes", "ver", b"2.0"),
    ("certInfo missing", "certInfo", DELETE),
    ("certInfo is text", "certInfo", "ff544347"),
    ("certInfo is huge", "certInfo", b"\xff" * MB),
    ("certInfo is truncated", "certInfo", b"\xff\x54\x43"),
    ("pubArea missing", "pubArea", DELETE),
    ("pubArea is a map", "pubArea", {"type": 1}),
    ("pubArea is huge", "pubArea", b"\x00" * MB),
]


def _cases() -> list[Any]:
    out = []
    for format_name, base in BASE.items():
        for name, field, value in FIELD_CASES:
            if field not in base:
                continue
            statement = dict(base)
            if value is DELETE:
                del statement[field]
            else:
                statement[field] = value
            out.append(pytest.param(format_name, statement, id=f"{format_name}: {name}"))
        odd: tuple[tuple[str, object], ...] = (
            ("statement is a list", [base]),
            ("statement is None", None),
            ("statement is bytes", b"\xa0"),
            ("statement is empty", {}),
            ("statement has int keys", {1: b"", 2: []}),
        )
        for name, value in odd:
            out.append(pytest.param(format_name, value, id=f"{format_name}: {name}"))
    out.append(pytest.param("tpm", {**BASE["tpm"], "ecdaaKeyId": b"\x01"}, id="tpm: ECDAA"))
    return out


@pytest.mark.parametrize(("format_name", "statement"), _cases())
def test_malformed_statements_are_bad_attestation_statements(
    format_name: str, statement: Any
) -> None:
    with pytest.raises(ACMEProblem) as info:
        FORMATS[format_name].verify(statement, KEY_AUTHORIZATION, CONTEXT)
    assert info.value.problem == "badAttestationStatement"
    assert info.value.http_status == 400
    assert len(info.value.detail) <= 300


@pytest.mark.parametrize("format_name", sorted(BASE))
def test_a_key_authorization_that_is_not_utf8_encodable_is_a_bad_statement(
    format_name: str,
) -> None:
    with pytest.raises(ACMEProblem) as info:
        FORMATS[format_name].verify(BASE[format_name], "token.\udc80", CONTEXT)
    assert info.value.problem == "badAttestationStatement"


def test_the_builtin_plugin_registers_the_three_formats_in_order() -> None:
    assert [f.format_name for f in devid_attestation_formats()] == ["tpm", "apple", "step"]
    info = {p.name: p for p in PluginManager().plugins()}
    assert info["attestation"].module == "plugins.attestation"
    assert info["attestation"].attestation_formats == ("tpm", "apple", "step")
    assert info["attestation"].distribution is not None
    formats = PluginManager().attestation_formats()
    assert {"tpm", "apple", "step"} <= set(formats)
    assert isinstance(formats["tpm"], TPMFormat)


def test_devid_plugins_lists_the_attestation_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "attestation: plugins.attestation" in out
    assert "attestation formats: tpm, apple, step" in out


def test_the_attestation_plugin_can_be_disabled() -> None:
    manager = PluginManager(disabled=["attestation"])
    assert "attestation" not in {p.name for p in manager.plugins()}
    assert not {"tpm", "apple", "step"} & set(manager.attestation_formats())
