"""`devid demo` by subprocess: the whole flow on one machine, then everything stops."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.swtpm import swtpm_available


@pytest.mark.skipif(not swtpm_available(), reason="swtpm is not installed")
def test_devid_demo_runs_the_whole_flow_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hosts.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # Both account certificates, with their subjects and the Account CA as issuer.
    assert "Account corp-wifi:" in out and "Account site-vpn:" in out
    assert "subject:  CN=demo-laptop\n" in out
    assert "subject:  CN=demo-laptop.vpn.example\n" in out
    assert out.count("issuer:   CN=devid Account CA,O=devid") == 2
    assert "Device certificate (in the agent's memory only, never on disk)" in out
    assert "CA stopped" in out and "swtpm stopped" in out
