"""devid.toml is checked: an unknown table or key is refused at load with its file, line
and the nearest known name; ``[plugins] disabled`` names installed plugins only; and
``devid config check`` reports all of it without starting anything."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigurationError
from hosts.cli import main
from hosts.core.authority import Authority
from hosts.core.config import (
    SCHEMA,
    ConfigProblems,
    KeyLines,
    check_disabled_plugins,
    installed_plugins,
    load_config,
)
from hosts.service.attestation import load_attestation_policy
from hosts.validation import ValidationConfig
from plugins.options import Options
from tests.conftest import CA


def edit(ca: CA, change: Callable[[str], str]) -> Path:
    """Change devid.toml's text (so its lines stay as devid wrote them)."""
    path = ca.data_dir / "devid.toml"
    text = path.read_text()
    changed = change(text)
    assert changed != text
    path.write_text(changed)
    return path


def line_of(path: Path, needle: str) -> int:
    """The number of the one line of *path* that holds *needle*."""
    found = [n for n, line in enumerate(path.read_text().split("\n"), 1) if needle in line]
    assert len(found) == 1, found
    return found[0]


def check(ca: CA, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    """``devid config check`` in this process: its exit status and what it printed."""
    code = main(["config", "check", "--data", str(ca.data_dir), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(autouse=True)
def _no_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVID_PASSWORD", raising=False)


@pytest.fixture
def password_file(ca: CA, tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_bytes(ca.password + b"\n")
    return path


# (how devid.toml is misspelt, the line that then holds the typo, what the error says)
TYPOS: dict[str, tuple[Callable[[str], str], str, str]] = {
    "store key": (
        lambda t: t.replace('synchronous = "full"', 'synchronus = "full"'),
        "synchronus",
        "unknown key 'synchronus' in [store]; did you mean 'synchronous'?",
    ),
    "table": (
        lambda t: t.replace("[server]\n", "[sever]\n"),
        "[sever]",
        "unknown table [sever]; did you mean [server]?",
    ),
    "server key": (
        lambda t: t.replace("[server]\n", "[server]\nmax_body_byte = 65536\n"),
        "max_body_byte",
        "unknown key 'max_body_byte' in [server]; did you mean 'max_body_bytes'?",
    ),
}


@pytest.mark.parametrize("typo", TYPOS, ids=str)
def test_a_typo_is_refused_at_load_with_file_line_and_suggestion(ca: CA, typo: str) -> None:
    change, needle, message = TYPOS[typo]
    path = edit(ca, change)
    expected = f"{path}:{line_of(path, needle)}: {message}"
    with pytest.raises(ConfigProblems) as caught:
        load_config(ca.data_dir)
    assert str(caught.value) == expected
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        Authority.load(ca.data_dir, ca.password)


@pytest.mark.parametrize("typo", TYPOS, ids=str)
def test_config_check_reports_a_typo_with_file_line_and_suggestion(
    ca: CA, typo: str, capsys: pytest.CaptureFixture[str]
) -> None:
    change, needle, message = TYPOS[typo]
    path = edit(ca, change)
    code, output = check(ca, capsys)
    assert code == 1
    assert output.strip() == f"{path}:{line_of(path, needle)}: {message}"


def test_every_unknown_name_is_reported_in_the_order_of_the_file(ca: CA) -> None:
    path = edit(
        ca,
        lambda t: (
            t.replace('synchronous = "full"', 'synchronus = "full"')
            + '\n[ca.intermediates.tsl]\ncertificate = "x"\n\n[nonsense]\nvalue = 1\n'
        ),
    )
    with pytest.raises(ConfigProblems) as caught:
        load_config(ca.data_dir)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{line_of(path, 'synchronus')}: unknown key 'synchronus' in [store];"
        " did you mean 'synchronous'?",
        f"{path}:{line_of(path, '[ca.intermediates.tsl]')}: unknown table"
        " [ca.intermediates.tsl]; did you mean [ca.intermediates.tls]?",
        f"{path}:{line_of(path, '[nonsense]')}: unknown table [nonsense] (known: [ca],"
        " [server], [store], [plugins], [admin], [attestation], [acme], [inventory],"
        " [provisioners])",
    ]


def without_table(text: str, header: str) -> str:
    """*text* without the table *header* and its keys (up to the next blank line)."""
    return re.sub(rf"^{re.escape(header)}\n(.+\n)*\n", "", text, count=1, flags=re.MULTILINE)


def test_a_key_in_dotted_or_inline_form_is_found_too(ca: CA) -> None:
    path = edit(
        ca,
        lambda t: (
            'store.path = "db/devid.sqlite"\nstore.synchronus = "full"\n'
            + without_table(t, "[store]")
        ),
    )
    with pytest.raises(ConfigProblems) as caught:
        load_config(ca.data_dir)
    assert str(caught.value) == (
        f"{path}:2: unknown key 'synchronus' in [store]; did you mean 'synchronous'?"
    )
    path.write_text('admin = { tokens = ["a"] }\n' + without_table(path.read_text(), "[admin]"))
    with pytest.raises(ConfigProblems) as caught:
        load_config(ca.data_dir)
    assert str(caught.value).startswith(f"{path}:1: unknown key 'tokens' in [admin]")


def test_an_unknown_plugin_in_disabled_is_refused_naming_the_installed_ones(
    ca: CA, capsys: pytest.CaptureFixture[str]
) -> None:
    path = edit(ca, lambda t: t.replace("disabled = []", 'disabled = ["nosuchplugin"]'))
    installed = installed_plugins()
    assert {"jwk", "acme", "x5c", "attestation", "accounts"} <= set(installed)
    expected = (
        f"{path}:{line_of(path, 'nosuchplugin')}: [plugins] disabled names 'nosuchplugin',"
        f" which is not an installed plugin; installed: {', '.join(installed)}"
    )
    config = load_config(ca.data_dir)
    with pytest.raises(ConfigurationError) as caught:
        check_disabled_plugins(config, installed)
    assert str(caught.value) == expected
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        Authority.load(ca.data_dir, ca.password)
    code, output = check(ca, capsys)
    assert (code, output.strip()) == (1, expected)


def test_a_misspelt_plugin_gets_the_nearest_installed_name(ca: CA) -> None:
    edit(ca, lambda t: t.replace("disabled = []", 'disabled = ["jwt"]'))
    with pytest.raises(ConfigurationError, match=r"'jwt'.*did you mean 'jwk'\?"):
        Authority.load(ca.data_dir, ca.password)


def test_an_installed_plugin_may_be_disabled(ca: CA) -> None:
    edit(ca, lambda t: t.replace("disabled = []", 'disabled = ["hmac"]'))
    if "hmac" not in installed_plugins():
        pytest.skip("the example HMAC plugin is not installed")
    Authority.load(ca.data_dir, ca.password).close()


def test_a_valid_config_passes_the_check(
    ca: CA, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = check(ca, capsys, "--password-file", str(password_file))
    assert (code, output) == (0, "ok: devid.toml is valid (3 provisioners: admin, acme, devices)\n")


def test_without_a_password_the_check_says_what_it_skipped(
    ca: CA, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = check(ca, capsys)
    assert code == 0
    first, second = output.splitlines()
    assert first == "ok: devid.toml is valid (3 provisioners: admin, acme, devices)"
    assert second.startswith("skipped: decrypting the CA keys (no password")


def test_the_check_reports_what_the_server_would_refuse(
    ca: CA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = edit(
        ca,
        lambda t: (
            t.replace('max_token_lifetime = "5m"', 'max_token_lifetim = "5m"')
            + '\n[attestation]\nunverifiable_ek_certificate = "maybe"\n'
            + "\n[acme]\nhttp01_port = 0\n"
            + '\n[inventory]\nsync_interval = "1s"\n'
        ),
    )
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    code, output = check(ca, capsys, "--password-file", str(wrong))
    assert code == 1
    lines = output.splitlines()
    for expected in (
        f"{path}:{line_of(path, 'unverifiable')}: [attestation] unverifiable_ek_certificate",
        f"{path}:{line_of(path, 'http01_port')}: [acme] http01_port must be a port number",
        f"{path}:{line_of(path, 'sync_interval')}: [inventory] sync_interval must be at least",
        f"{path}:{line_of(path, 'lifetim =')}: provisioner 'admin': unknown option(s)",
        f"{path}:{line_of(path, '[ca.intermediates.tls]')}: cannot decrypt",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, lines)


def test_config_check_names_a_missing_data_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["config", "check", "--data", str(tmp_path / "nothing")])
    assert code == 1
    assert "devid.toml does not exist" in capsys.readouterr().out


def test_the_locator_finds_headers_arrays_and_keys_after_multiline_values() -> None:
    text = "\n".join(
        [
            "# a comment [not.a.table]",  # 1
            "top = 1",  # 2
            "[ca]",  # 3
            'name = "x # [y]"',  # 4
            "list = [",  # 5
            '  "[fake]",',  # 6
            "  'a = 1',",  # 7
            "]",  # 8
            'text = """',  # 9
            "[also.fake]",  # 10
            'b = 2"""',  # 11
            "[ ca . 'root' ]",  # 12
            'key = "k"',  # 13
            "[[provisioners]]",  # 14
            'name = "a"',  # 15
            "[provisioners.durations]",  # 16
            'max = "1d"',  # 17
            "[[provisioners]]",  # 18
            '"quoted.name" = 1',  # 19
            "durations.min = 2",  # 20
        ]
    )
    lines = KeyLines(text)
    assert lines.find(("top",)) == 2
    assert lines.find(("ca",)) == 3
    assert lines.find(("ca", "list")) == 5
    assert lines.find(("ca", "text")) == 9
    assert lines.find(("also",)) is None and lines.find(("fake",)) is None
    assert lines.find(("ca", "a")) == 3  # not line 7, inside the list: [ca] is the nearest
    assert lines.find(("ca", "root")) == 12
    assert lines.find(("ca", "root", "key")) == 13
    assert lines.find(("provisioners",)) == 14
    assert lines.find(("provisioners", 0)) == 14
    assert lines.find(("provisioners", 0, "durations", "max")) == 17
    assert lines.find(("provisioners", 1)) == 18
    assert lines.find(("provisioners", 1, "quoted.name")) == 19
    assert lines.find(("provisioners", 1, "durations")) == 20
    assert lines.find(("provisioners", 1, "durations", "min")) == 20
    assert lines.find(("provisioners", 1, "durations", "nothing")) == 20


def _keys_read(monkeypatch: pytest.MonkeyPatch, parse: Callable[[], Any], where: str) -> set[str]:
    """The keys *parse* reads from its table (given an empty one, it reads every key)."""
    seen: set[str] = set()
    finish = Options.finish

    def recording(self: Options) -> None:
        if self.where == where:
            seen.update(self._seen - {"type", "name"})
        finish(self)

    monkeypatch.setattr(Options, "finish", recording)
    parse()
    return seen


def test_the_schema_knows_every_key_attestation_and_acme_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    read = _keys_read(monkeypatch, lambda: load_attestation_policy({}, tmp_path), "[attestation]")
    assert read == set(SCHEMA["attestation"])
    read = _keys_read(monkeypatch, lambda: ValidationConfig.from_table({}), "[acme]")
    assert read == set(SCHEMA["acme"])


def test_devid_help_lists_config(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert re.search(r"^\s+config\s+check devid.toml", capsys.readouterr().out, re.MULTILINE)


@pytest.mark.parametrize(
    ("change", "needle", "message"),
    [
        (
            lambda t: t.replace('synchronous = "full"', 'synchronous = "fast"'),
            "synchronous",
            "store.synchronous must be 'full' or 'normal'",
        ),
        (
            lambda t: t.replace("[server]\n", "[server]\nidle_timeout = 0\n"),
            "idle_timeout",
            "server.idle_timeout must be at least 0.1",
        ),
        (
            lambda t: t.replace('key = "secrets/tls_ca.key"', "key = 3"),
            "key = 3",
            "ca.intermediates.tls.key must be a path",
        ),
    ],
)
def test_a_bad_value_is_refused_with_its_line(
    ca: CA, change: Callable[[str], str], needle: str, message: str
) -> None:
    path = edit(ca, change)
    with pytest.raises(ConfigurationError) as caught:
        load_config(ca.data_dir)
    assert str(caught.value) == f"{path}:{line_of(path, needle)}: {message}"
