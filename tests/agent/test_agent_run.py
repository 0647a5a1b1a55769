"""`devid agent run`: the whole device flow end to end, the renewal schedule, recovery.

swtpm + the quart host: attest, enrol (device certificate in memory only), list
the device's accounts with an x5c bearer token, get a Wi-Fi certificate with a
TPM key and a VPN certificate with a software key (and PKCS#12), both from the
Account CA with the names the templates render.
"""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from agent.daemon import ACCOUNTS, DEVICE, Agent, Scheduler, backoff, renewal_time, run
from engine.ports import FrozenClock
from hosts.core.authority import Authority
from tests.agent.test_agent_enroll import files_holding, register, trust_swtpm_ek_ca
from tests.conftest import CA, RunningServer, make_token_factory, provisioner_of, serve_function

if TYPE_CHECKING:
    from tests.swtpm import LocalCA, Swtpm, SwtpmFactory

pytest_plugins = ["tests.swtpm"]


def add_accounts(server: RunningServer, ek: str) -> None:
    accounts = server.authority.accounts
    accounts.add({"name": "wifi", "type": "wifi", "commonName": "{device.name}", "devices": [ek]})
    accounts.add(
        {
            "name": "vpn",
            "type": "vpn",
            "commonName": None,
            "sans": ["dns:{device.name}.vpn.example"],
            "tpmKey": False,
            "pkcs12": True,
            "devices": [ek],
        }
    )


def make_agent(server: RunningServer, swtpm: Swtpm, tmp_path: Path) -> Agent:
    return Agent(
        ca_url=server.url,
        root=server.root_path,
        tcti=swtpm.tcti,
        state=tmp_path / "agent-state",
        out=tmp_path / "agent-out",
    )


@pytest.fixture
def device(quart_server: RunningServer, swtpm_ek_ca: LocalCA, swtpm_factory: SwtpmFactory) -> Swtpm:
    trust_swtpm_ek_ca(quart_server, swtpm_ek_ca)
    instance = swtpm_factory("rsa")
    ek = register(quart_server, instance)
    add_accounts(quart_server, ek)
    return instance


async def test_one_pass_delivers_both_account_certificates(
    quart_server: RunningServer, device: Swtpm, ca: CA, tmp_path: Path
) -> None:
    agent = make_agent(quart_server, device, tmp_path)
    assert await run(agent, once=True) == 0

    out = tmp_path / "agent-out"
    account_ca = quart_server.authority.issuers["account"].certificate
    name = f"swtpm-{device.ek_type}"
    wifi = x509.load_pem_x509_certificates((out / "wifi.crt").read_bytes())
    vpn = x509.load_pem_x509_certificates((out / "vpn.crt").read_bytes())
    for chain in (wifi, vpn):
        assert chain[0].issuer == account_ca.subject
    wifi_cn = wifi[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in wifi_cn] == [name]
    vpn_san = vpn[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert vpn_san.get_values_for_type(x509.DNSName) == [f"{name}.vpn.example"]
    # The Wi-Fi key is in the TPM: no key file; the VPN key is a 0600 software key.
    assert not (out / "wifi.key").exists() and not (out / "wifi.p12").exists()
    assert stat.S_IMODE((out / "vpn.key").stat().st_mode) == 0o600
    key, cert, _ = pkcs12.load_key_and_certificates((out / "vpn.p12").read_bytes(), None)
    assert cert == vpn[0] and key is not None
    assert wifi[0].public_key() == agent.certificates["wifi"].certificate.public_key()

    # The device certificate never reached disk: not in the agent's directories, nor
    # in the server's data directory apart from its database (which, as a CA's must,
    # records every certificate it issued).
    assert agent.enrollment is not None
    device_cert = agent.enrollment.certificate
    assert files_holding(device_cert, tmp_path, skip=ca.data_dir) == []
    database = ca.data_dir / "db"
    database_files = {database / f"devid.sqlite{suffix}" for suffix in ("", "-wal", "-shm")}
    server_files = files_holding(device_cert, ca.data_dir, skip=tmp_path / "nothing")
    assert [p for p in server_files if p not in database_files] == []
    # ... and the scan is not blind: it finds the account certificates that are stored.
    assert files_holding(wifi[0], tmp_path, skip=ca.data_dir) == [out / "wifi.crt"]


def _certificate(not_before: datetime, lifetime: timedelta) -> x509.Certificate:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .sign(key, hashes.SHA256())
    )


def test_scheduler_renews_at_two_thirds_and_backs_off() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = FrozenClock(start)
    sched = Scheduler(clock)
    assert sched.is_due(DEVICE) and sched.is_due("wifi") and sched.is_due(ACCOUNTS)

    first = _certificate(start, timedelta(hours=24))
    assert sched.issued("wifi", first) == start + timedelta(hours=16)
    assert renewal_time(first) == start + timedelta(hours=16)
    sched.succeeded(ACCOUNTS)
    clock.advance(timedelta(hours=15, minutes=59))
    assert not sched.is_due("wifi")
    clock.advance(timedelta(minutes=2))  # past two thirds
    assert sched.is_due("wifi")

    # The renewal fails: back-off 1, 2, 4 ... capped at 60 s.
    assert sched.failed("wifi") == clock.now() + timedelta(seconds=1)
    assert not sched.is_due("wifi")
    clock.advance(timedelta(seconds=1))
    assert sched.is_due("wifi")
    assert [backoff(n) for n in (1, 2, 3, 7, 8, 30)] == [1, 2, 4, 60, 60, 60]

    # The renewal succeeds: the next renewal time is set from the new certificate.
    second = _certificate(clock.now(), timedelta(hours=24))
    renew = sched.issued("wifi", second)
    assert renew == clock.now() + timedelta(hours=16)
    assert not sched.is_due("wifi") and "wifi" not in sched.failures
    assert sched.next_time() <= renew


async def _serve(ca: CA, nursery: trio.Nursery, listen: str) -> tuple[RunningServer, trio.Event]:
    auth = Authority.load(ca.data_dir, ca.password)
    stop = trio.Event()
    urls: list[str] = await nursery.start(
        lambda task_status: serve_function("quart")(
            auth, listen, shutdown_trigger=stop.wait, task_status=task_status
        )
    )
    url = next(u for u in urls if "127.0.0.1" in u)
    key = provisioner_of(auth).load_private_key(ca.password)
    running = RunningServer(
        url=url,
        urls=urls,
        root_path=ca.root_path,
        authority=auth,
        token=make_token_factory(key, url, lambda: datetime.now(UTC)),
        host="quart",
    )
    return running, stop


async def test_the_agent_recovers_after_a_server_restart(
    ca: CA,
    nursery: trio.Nursery,
    swtpm_ek_ca: LocalCA,
    swtpm_factory: SwtpmFactory,
    tmp_path: Path,
) -> None:
    server, stop = await _serve(ca, nursery, "127.0.0.1:0")
    trust_swtpm_ek_ca(server, swtpm_ek_ca)
    swtpm = swtpm_factory("rsa")
    add_accounts(server, register(server, swtpm))
    agent = make_agent(server, swtpm, tmp_path)
    assert await run(agent, once=True) == 0
    first = {n: i.certificate.serial_number for n, i in agent.certificates.items()}

    stop.set()
    await trio.sleep(0.2)
    server.authority.close()
    # While the server is down, a pass fails and is retried later (back-off).
    for name in agent.accounts:
        agent.scheduler.forget(name)
    result = await trio.to_thread.run_sync(agent.run_pass)
    assert not result.ok and agent.scheduler.failures

    port = server.url.rsplit(":", 1)[1]
    restarted, stop2 = await _serve(ca, nursery, f"127.0.0.1:{port}")
    trust_swtpm_ek_ca(restarted, swtpm_ek_ca)
    agent.scheduler.retry_at.clear()  # the back-off has passed
    assert await run(agent, once=True) == 0
    second = {n: i.certificate.serial_number for n, i in agent.certificates.items()}
    assert set(second) == {"wifi", "vpn"} and all(second[n] != first[n] for n in first)
    stop2.set()
    restarted.authority.close()


async def test_cli_agent_run_once(
    quart_server: RunningServer, device: Swtpm, tmp_path: Path
) -> None:
    from hosts.cli import main

    argv = ["agent", "run", "--once", "--ca", quart_server.url]
    argv += ["--root", str(quart_server.root_path), "--tcti", device.tcti]
    argv += ["--state", str(tmp_path / "state"), "--out", str(tmp_path / "out")]
    assert await trio.to_thread.run_sync(main, argv) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "vpn.crt",
        "vpn.key",
        "vpn.p12",
        "wifi.crt",
    ]


async def test_the_daemon_delivers_and_stops_cleanly_on_sigterm(
    quart_server: RunningServer, device: Swtpm, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    argv = [sys.executable, "-m", "hosts.cli", "agent", "run", "--ca", quart_server.url]
    argv += ["--root", str(quart_server.root_path), "--tcti", device.tcti]
    argv += ["--state", str(tmp_path / "state"), "--out", str(out)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with trio.move_on_after(60):
            while not ((out / "wifi.crt").exists() and (out / "vpn.crt").exists()):
                assert process.poll() is None, process.communicate()
                await trio.sleep(0.1)
        assert (out / "wifi.crt").exists() and (out / "vpn.crt").exists()
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            while process.poll() is None:
                await trio.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
        _, err = process.communicate()
    assert process.returncode == 0, err.decode()
    assert b"received SIGTERM, stopping" in err and b"next pass in" in err
