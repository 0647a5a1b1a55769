"""`devid serve --host raw --workers N`: several processes on one port, stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx

from tests.conftest import CA, new_csr
from tests.hosts.helpers import clean_env, devid_serve, free_port, tls_context


def test_two_workers_share_the_port_issue_and_stop_on_sigterm(ca: CA, tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(DEVID_PASSWORD=ca.password.decode())
    with devid_serve(
        ca.data_dir,
        port,
        tmp_path / "serve.log",
        root=ca.root_path,
        env=env,
        extra=("--host", "raw", "--workers", "2"),
    ) as process:
        workers = subprocess.run(
            ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(workers) == 2
        if len(os.sched_getaffinity(0)) >= 2:
            # Each worker keeps to a CPU of its own.
            placed = [os.sched_getaffinity(int(pid)) for pid in workers]
            assert all(len(cpus) == 1 for cpus in placed) and placed[0] != placed[1]
        url = f"https://127.0.0.1:{port}"
        from hosts.core.authority import Authority
        from plugins.jwk import JWKProvisioner, mint_token

        authority = Authority.load(ca.data_dir, ca.password)
        provisioner = authority.provisioners["admin"]
        assert isinstance(provisioner, JWKProvisioner)
        key = provisioner.load_private_key(ca.password)
        serials = set()
        with httpx.Client(verify=tls_context(ca.root_path)) as http:
            for index in range(6):
                _, _, csr_pem = new_csr("w.example")
                token = mint_token(
                    key,
                    provisioner="admin",
                    subject="w.example",
                    audience=f"{url}/1.0/sign",
                    now=authority.clock.now(),
                    jti=f"worker-test-{index}",
                )
                # A new connection each time, so the kernel spreads them over the workers.
                response = http.post(
                    f"{url}/1.0/sign",
                    json={"csr": csr_pem, "ott": token},
                    headers={"connection": "close"},
                )
                assert response.status_code == 201, response.text
                serials.add(response.json()["crt"])
        assert len(serials) == 6
        assert authority.stores.certificates.count_certificates() >= 6
        authority.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    for pid in workers:
        assert subprocess.run(["kill", "-0", pid], capture_output=True).returncode != 0
