"""What an operator tripped over on a first run (issue 20): each friction, fixed, with the
test that shows it.

The commands run in process through :func:`hosts.cli.main` (the same entry point as the
installed ``devid``), with the environment set per test.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography import x509

from engine.attestation import AttestationPolicy, AttestRequest, begin_attestation
from engine.errors import BadRequest, Forbidden
from engine.inventory import Device, ek_urn_from_digest, permanent_identifier_value
from engine.ports import CountingRandom
from hosts.cli import main
from hosts.core.authority import Authority
from tests.attestation_fakes import make_device, make_vendor
from tests.conftest import CA, PASSWORD, RunningServer
from tests.hosts.helpers import tls_context

DIGEST = bytes(range(32))
URN = ek_urn_from_digest(DIGEST)  # urn:ek:sha256:AAECAwQF...+/ form
PERMANENT_ID = permanent_identifier_value(DIGEST)  # base64url, unpadded


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No DEVID_* variable, and a per-user data directory that holds no CA."""
    import os

    for name in list(os.environ):
        if name.startswith("DEVID_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- a. the data directory ------------------------------------------------------------------


def test_a_missing_data_directory_says_how_to_point_at_the_ca(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ca: CA
) -> None:
    code, _, err = run(capsys, "device", "list")
    assert code == 2
    assert "DEVID_DATA" in err and "--data" in err
    assert str(Path(str(env_default_data_dir()))) in err  # where it looked
    assert "neither --data nor $DEVID_DATA" in err
    # The second init comes last, and only as the way to a *new* CA.
    assert err.index("DEVID_DATA") < err.index("devid init")

    code, _, err = run(capsys, "account", "list", "--data", ca.data_dir / "nowhere")
    assert code == 2 and "(--data)" in err

    # Admin certificates need an existing CA too, and say the same.
    code, _, err = run(
        capsys, "admin", "certificate", "ops", "o.crt", "o.key", "--data", ca.data_dir / "nowhere"
    )
    assert code == 2
    assert "DEVID_DATA" in err and "--data" in err
    assert err.index("DEVID_DATA") < err.index("devid init")

    env.setenv("DEVID_DATA", str(ca.data_dir))
    code, out, _ = run(capsys, "device", "list")
    assert code == 0 and out.strip() == "no devices"


def env_default_data_dir() -> Path:
    from hosts.core.config import default_data_dir

    return default_data_dir()


# --- c. DEVID_CA_URL --------------------------------------------------------------------------


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def test_c_devid_token_takes_the_ca_url_from_the_environment(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ca: CA
) -> None:
    env.setenv("DEVID_PASSWORD", PASSWORD.decode())
    env.setenv("DEVID_CA_URL", "https://ca.example.net:9443")
    code, out, err = run(capsys, "token", "--data", ca.data_dir, "--subject", "svc.example.com")
    assert code == 0, err
    assert _claims(out.strip())["aud"] == "https://ca.example.net:9443/1.0/sign"
    # --ca-url still wins over the environment.
    code, out, err = run(
        capsys, "token", "--data", ca.data_dir, "--subject", "svc", "--ca-url", "https://x:1"
    )
    assert code == 0, err
    assert _claims(out.strip())["aud"] == "https://x:1/1.0/sign"


def test_c_agent_enroll_finds_the_acme_directory_from_devid_ca_url(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import agent.cli
    import agent.enroll
    from agent.state import AgentError

    seen: dict[str, Any] = {}

    @contextmanager
    def no_tpm(tcti: str) -> Iterator[object]:
        yield object()

    def fake_enroll(directory: str, root: Path, tpm: object, state: Path, **kw: Any) -> Any:
        seen.update(directory=directory, ca_url=kw["ca_url"])
        raise AgentError("stopped by the test")

    env.setattr(agent.cli, "_open_tpm", no_tpm)
    env.setattr(agent.enroll, "enroll", fake_enroll)
    env.setenv("DEVID_CA_URL", "https://ca.example.net:9443/")
    root = tmp_path / "root.crt"
    code, _, err = run(capsys, "agent", "enroll", "--root", root, "--state", tmp_path / "s")
    assert code == 1 and "stopped by the test" in err
    assert seen["directory"] == "https://ca.example.net:9443/acme/devices/directory"

    env.delenv("DEVID_CA_URL")
    code, _, err = run(capsys, "agent", "enroll", "--root", root, "--state", tmp_path / "s")
    assert code == 1 and "DEVID_CA_URL" in err and "DEVID_ACME_URL" in err


# --- f. devid ca crl --------------------------------------------------------------------------


async def test_f_crl_of_each_issuer_as_der_file_or_clean_pem(
    quart_server: RunningServer,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    authority = quart_server.authority
    common = ["--ca-url", quart_server.url, "--root", str(quart_server.root_path)]
    for issuer in ("agent", "account", "tls", "attestation"):
        target = tmp_path / f"{issuer}.der"
        code = await trio.to_thread.run_sync(
            main, ["ca", "crl", str(target), "--issuer", issuer, *common]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "BEGIN" not in out and f"The {issuer} CA's CRL" in out
        crl = x509.load_der_x509_crl(target.read_bytes())
        assert crl.issuer == authority.ca.issuers[issuer].certificate.subject

    code = await trio.to_thread.run_sync(main, ["ca", "crl", "-", "--issuer", "tls", *common])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("-----BEGIN X509 CRL-----\n")
    assert out.endswith("-----END X509 CRL-----\n")
    crl = x509.load_pem_x509_crl(out.encode())
    assert crl.issuer == authority.ca.issuers["tls"].certificate.subject


# --- h. header rows ---------------------------------------------------------------------------


def test_h_device_and_account_lists_have_a_header_row(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ca: CA
) -> None:
    data = ["--data", str(ca.data_dir)]
    assert run(capsys, "device", "add", *data, "--ek", URN, "--name", "lab-1", "--tag", "x")[0] == 0
    _, out, _ = run(capsys, "device", "list", *data)
    header, row = out.splitlines()[:2]
    assert header.split() == ["STATUS", "EK", "NAME", "OWNER", "TAGS"]
    assert row.split() == ["active", URN, "lab-1", "-", "x"]
    assert header.index("NAME") == row.index("lab-1")  # columns line up
    _, out, _ = run(capsys, "device", "list", *data, "--json")
    assert json.loads(out)["devices"][0]["ek"] == URN  # --json unchanged

    assert run(capsys, "account", "add", "corp-wifi", *data, "--type", "wifi", "--tag", "x")[0] == 0
    _, out, _ = run(capsys, "account", "list", *data)
    header, row = out.splitlines()[:2]
    assert header.split()[:5] == ["STATUS", "NAME", "TYPE", "KEY", "VALID"]
    assert row.split()[:3] == ["active", "corp-wifi", "wifi"]
    assert header.index("NAME") == row.index("corp-wifi")
    _, out, _ = run(capsys, "account", "list", *data, "--json")
    assert [a["name"] for a in json.loads(out)["accounts"]] == ["corp-wifi"]


# --- i. every form of a device's identifier ----------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        URN,
        URN.upper().replace("URN:EK:SHA256:", "URN:EK:SHA256:", 1)[:14] + URN[14:],
        PERMANENT_ID,
        f"PermanentIdentifier:{PERMANENT_ID}",
        f"urn:ek:sha256:{PERMANENT_ID}",
        base64.urlsafe_b64encode(DIGEST).decode(),  # padded base64url
        DIGEST.hex(),
        f"  {URN}\n",
    ],
)
def test_i_every_printed_form_names_the_device(form: str) -> None:
    from engine.inventory import device_ek_urn, ek_digest_from_identifier

    assert ek_digest_from_identifier(form) == DIGEST
    assert device_ek_urn(form) == URN


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("serial-123", "urn:ek:sha256"),
        ("", "urn:ek:sha256"),
        (PERMANENT_ID[:-1], "PermanentIdentifier"),
        (5, "urn:ek:sha256"),
        ("urn:ek:sha256:AAAA", "32-byte"),  # a URN keeps its own complaints
        ("urn:ek:sha256:!!!", "base64"),
    ],
)
def test_i_other_text_is_still_refused(bad: Any, message: str) -> None:
    from engine.inventory import device_ek_urn

    with pytest.raises(BadRequest, match=message):
        device_ek_urn(bad)


def test_i_show_search_and_admin_api_take_the_permanent_identifier(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ca: CA, authority: Authority
) -> None:
    data = ["--data", str(ca.data_dir)]
    assert run(capsys, "device", "add", *data, "--ek", URN, "--name", "lab-1")[0] == 0
    code, out, err = run(capsys, "device", "show", *data, PERMANENT_ID)
    assert code == 0, err
    assert out.splitlines()[0] == URN
    code, out, _ = run(capsys, "device", "list", *data, "--search", PERMANENT_ID, "--json")
    assert [d["ek"] for d in json.loads(out)["devices"]] == [URN]
    code, out, _ = run(capsys, "device", "list", *data, "--search", "lab", "--json")
    assert json.loads(out)["total"] == 1  # plain text search as before
    assert authority.inventory.get(PERMANENT_ID).ek_urn == URN  # GET /api/v1/devices/{ek}
    assert authority.inventory.get(f"PermanentIdentifier:{PERMANENT_ID}").name == "lab-1"


async def test_i_admin_api_path_takes_the_permanent_identifier(
    quart_server: RunningServer, ca: CA
) -> None:
    quart_server.authority.inventory.add({"ek": URN, "name": "lab-2"})
    token = (ca.data_dir / "secrets" / "admin-token").read_text().strip()
    async with httpx.AsyncClient(verify=tls_context(quart_server.root_path)) as http:
        r = await http.get(
            f"{quart_server.url}/api/v1/devices/{PERMANENT_ID}",
            headers={"authorization": f"Bearer {token}"},
        )
    assert r.status_code == 200, r.text
    assert r.json()["ek"] == URN and r.json()["name"] == "lab-2"


# --- j. an untrusted EK certificate -----------------------------------------------------------


def test_j_untrusted_ek_certificate_refusal_names_ek_roots() -> None:
    device = make_device("rsa", vendor=make_vendor("Untrusted", slot=1))
    policy = AttestationPolicy(ek_roots=(make_vendor("Trusted").root,))
    request = AttestRequest.parse(device.attest_body())
    with pytest.raises(Forbidden) as info:
        begin_attestation(
            request, Device(device.urn), policy, datetime.now(UTC), CountingRandom(b"j")
        )
    assert "not trusted" in info.value.detail
    assert "ek-roots/" in info.value.detail and "EK CA" in info.value.detail


# --- k. CSV row numbers -----------------------------------------------------------------------


def test_k_csv_rows_are_numbered_by_their_line_in_the_file() -> None:
    from hosts.service.inventory import parse_import_numbered

    text = (
        "ek,name,tags\n"  # line 1
        f"{URN},one,a\n"  # line 2
        "\n"  # line 3, blank
        'urn:ek:sha256:bad,"two\nlines",b\n'  # lines 4-5
        f"{ek_urn_from_digest(bytes(32))},three,\n"  # line 6
    )
    rows, numbers = parse_import_numbered(text, "csv")
    assert [r["name"] for r in rows] == ["one", "two\nlines", "three"]
    assert numbers == [2, 4, 6]
    rows, numbers = parse_import_numbered(json.dumps([{"ek": URN}, {"ek": URN}]), "json")
    assert numbers == [1, 2]


def test_k_import_reports_the_line_of_a_bad_row(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ca: CA, tmp_path: Path
) -> None:
    source = tmp_path / "devices.csv"
    source.write_text(f"ek,name\n{URN},one\nnot-an-ek,two\n")
    report = tmp_path / "report.json"
    code, out, _ = run(
        capsys, "device", "import", source, "--data", ca.data_dir, "--report", report
    )
    assert code == 1
    assert "row 3: error" in out  # the bad row is on line 3 of the file
    rows = json.loads(report.read_text())["rows"]
    assert [(r["row"], r["outcome"]) for r in rows] == [(2, "added"), (3, "error")]


# --- a, b, d, e. the README -------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"
ACCOUNTS_DOC = README.parent / "docs" / "accounts.md"


def _readme_section(title: str) -> str:
    import re

    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^#{{2,6}} {re.escape(title)}\n(.*?)(?=^#{{2,6}} |\Z)", text, re.M | re.S)
    assert match, title
    return match.group(1)


def test_a_the_quick_start_points_the_ca_host_commands_at_the_data_directory() -> None:
    quick = _readme_section("Quick start")
    first_block = quick.split("```sh\n", 1)[1]
    assert 'DEVID_DATA="$PWD/data"' in first_block.split("devid ", 1)[0]  # before any command
    operators = _readme_section("For operators")
    assert "assume `DEVID_DATA` is set" in operators


def test_b_the_readme_says_how_to_change_the_port() -> None:
    setup = _readme_section("Set up")
    assert "--listen HOST:PORT" in setup and "LISTEN=" in setup
    assert '`listen = "HOST:PORT"` under `[server]`' in setup


def test_d_the_quick_start_checks_the_printed_fingerprint_not_the_root_against_itself() -> None:
    quick = _readme_section("Quick start")
    step = quick[quick.index("# Fetch the root") : quick.index("devid ca root root.crt")]
    assert "root_ca.crt" not in step  # not the CA's own copy of the very root fetched
    assert "root fingerprint" in step  # the value `devid init` / `devid serve` printed
    assert '--fingerprint "$FP"' in quick


def test_e_the_account_examples_reach_the_walkthrough_device() -> None:
    import re

    text = README.read_text(encoding="utf-8")
    (device_tag,) = re.findall(r"devid device add [^\n]*--tag (\S+)", text)
    account_tags = re.findall(r"devid account add corp-wifi[^`]*?--tag (\S+)", text, re.S)
    assert account_tags == [device_tag]
    doc = ACCOUNTS_DOC.read_text(encoding="utf-8")
    assert re.findall(r"devid account add corp-wifi[^`]*?--tag (\S+)", doc, re.S) == [device_tag]
    assert f'"tags": ["{device_tag}"]' in doc


async def test_c_ca_revoke_finds_the_admin_token_through_devid_data(
    quart_server: RunningServer,
    ca: CA,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.conftest import new_csr, sign_json

    _, _, csr_pem = new_csr("svc.example.com")
    issued = await trio.to_thread.run_sync(
        sign_json, quart_server.authority, {"csr": csr_pem, "ott": quart_server.token()}
    )
    serial = str(x509.load_pem_x509_certificate(issued["crt"].encode()).serial_number)
    argv = ["ca", "revoke", serial, "--ca-url", quart_server.url]
    argv += ["--root", str(quart_server.root_path), "--reason", "test"]

    code = await trio.to_thread.run_sync(main, argv)
    assert code == 1 and "$DEVID_DATA" in capsys.readouterr().err  # no credential yet
    env.setenv("DEVID_DATA", str(ca.data_dir))
    code = await trio.to_thread.run_sync(main, argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"serial number {serial} has been revoked" in out
