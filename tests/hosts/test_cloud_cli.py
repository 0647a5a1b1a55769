"""A Compute Engine instance gets a certificate end to end, as an operator and an instance
run the commands (subprocesses): ``devid ca certificate --provisioner NAME`` fetches the
identity token from the loopback imitation of GCE's metadata server
(``hosts.testing.metadata``, whose JWK set the provisioner trusts) and asks ``devid
serve``, on both hosts; ``devid cloud forget`` and ``list`` on the CA's data directory.

Every test uses an instance ID of its own: the CA (one per host) remembers each
instance's first certificate for the whole module.
"""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import NameOID

from hosts.testing.metadata import GCPInstance, GCPMetadataServer
from hosts.testing.ports import LOOPBACK
from hosts.testing.servers import HOSTS, DevidServer, clean_env, devid_serve, run_devid
from tests.conftest import CA

PROJECT = "my-project"
ZONE = "europe-west1-b"
ACCOUNT = "web@my-project.iam.gserviceaccount.com"
#: The bound on one command, in seconds.
COMMAND_TIMEOUT = 90.0
_ids = itertools.count(7100000000000000001)


def instance(**facts: Any) -> GCPInstance:
    """An instance of the admitted project and zone with an ID no other test uses."""
    return GCPInstance(
        **{
            "project_id": PROJECT,
            "zone": ZONE,
            "instance_id": str(next(_ids)),
            "instance_name": "web-1",
            "service_account_email": ACCOUNT,
            **facts,
        }
    )


def add_gcp_provisioners(data_dir: Path, jwks_url: str) -> None:
    """``gcp`` admits the project ``my-project``; ``gcp-other`` only ``other-project``."""
    config_path = data_dir / "devid.toml"
    config = tomllib.loads(config_path.read_text())
    common = {
        "type": "GCP",
        "issuer": "tls",
        "zones": [ZONE, "us-central1-a"],
        "service_accounts": [ACCOUNT],
        "max_instance_age": "1h",
        "trust_on_first_use": True,
        "jwks_url": jwks_url,
        "key_refresh_interval": "1s",
    }
    config.setdefault("provisioners", []).extend(
        [
            {**common, "name": "gcp", "projects": [PROJECT]},
            {**common, "name": "gcp-other", "projects": ["other-project"]},
        ]
    )
    config_path.write_text(tomli_w.dumps(config))


@attrs.frozen
class Served:
    server: DevidServer
    root: Path
    data: Path

    def ca_options(self) -> tuple[str, ...]:
        return ("--ca-url", self.server.url, "--root", str(self.root))


@pytest.fixture(scope="module")
def metadata() -> Iterator[GCPMetadataServer]:
    with GCPMetadataServer(instance()) as server:
        yield server


@pytest.fixture(scope="module", params=HOSTS)
def served(
    request: pytest.FixtureRequest,
    _ca_template: CA,
    metadata: GCPMetadataServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """A CA with the GCP provisioners, served by ``devid serve`` on one host."""
    host = str(request.param)
    work = tmp_path_factory.mktemp(f"gcp-{host}")
    data = work / "ca"
    shutil.copytree(_ca_template.data_dir, data)
    add_gcp_provisioners(data, metadata.jwks_url)
    root = data / _ca_template.root_path.relative_to(_ca_template.data_dir)
    env = clean_env(DEVID_PASSWORD=_ca_template.password.decode())
    with devid_serve(data, work / "serve.log", host=host, root=root, env=env) as server:
        yield Served(server, root, data)


def certificate(
    served: Served,
    metadata: GCPMetadataServer,
    out: Path,
    *options: str,
    subject: str = "web-1",
    provisioner: str = "gcp",
    check: bool = True,
) -> Any:
    """``devid ca certificate SUBJECT out.crt out.key --provisioner PROVISIONER`` on the
    instance *metadata* serves."""
    return run_devid(
        "ca", "certificate", subject, out.with_suffix(".crt"), out.with_suffix(".key"),
        "--provisioner", provisioner, "--metadata-url", metadata.url, *served.ca_options(),
        *options, check=check, timeout=COMMAND_TIMEOUT,
    )  # fmt: skip


def refused(result: Any, *messages: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    for message in messages:
        assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def cloud(served: Served, *args: str, check: bool = True) -> Any:
    return run_devid("cloud", *args, "--data", served.data, check=check, timeout=COMMAND_TIMEOUT)


def test_an_instance_gets_one_certificate_until_the_operator_forgets_it(
    served: Served, metadata: GCPMetadataServer, tmp_path: Path
) -> None:
    metadata.instance = facts = instance()
    first = certificate(served, metadata, tmp_path / "first")
    assert metadata.audiences[-1] == f"{served.server.url}/1.0/sign#gcp"
    chain = x509.load_pem_x509_certificates((tmp_path / "first.crt").read_bytes())
    leaf = chain[0]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web-1"
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {
        f"web-1.c.{PROJECT}.internal",
        f"web-1.{ZONE}.c.{PROJECT}.internal",
    }
    assert leaf.issuer == chain[1].subject
    assert "TLS CA" in chain[1].subject.rfc4514_string()
    key = load_pem_private_key((tmp_path / "first.key").read_bytes(), None)
    assert key.public_key() == leaf.public_key()
    assert f"dns:web-1.c.{PROJECT}.internal" in first.stdout

    # Trust on first use: the instance's next identity token gets no certificate.
    again = certificate(served, metadata, tmp_path / "again", check=False)
    refused(again, "the CA refused (401): token has already been used")
    assert not (tmp_path / "again.key").exists()
    listed = cloud(served, "list", "gcp")
    assert facts.instance_id in listed.stdout.split()
    as_json = json.loads(cloud(served, "list", "gcp", "--json").stdout)
    assert facts.instance_id in as_json["instances"] and as_json["provisioner"] == "gcp"

    # It keeps its identity by renewing over mTLS.
    run_devid(
        "ca", "renew", tmp_path / "first.crt", tmp_path / "first.key", *served.ca_options(),
        timeout=COMMAND_TIMEOUT,
    )  # fmt: skip
    renewed = x509.load_pem_x509_certificates((tmp_path / "first.crt").read_bytes())[0]
    assert renewed.serial_number != leaf.serial_number

    # The operator forgets it: its next token gets a certificate, once.
    forgot = cloud(served, "forget", "gcp", facts.instance_id)
    assert f"Instance {facts.instance_id} is forgotten by provisioner 'gcp'" in forgot.stdout
    assert facts.instance_id not in cloud(served, "list", "gcp").stdout.split()
    certificate(served, metadata, tmp_path / "rebuilt")
    refused(
        certificate(served, metadata, tmp_path / "twice", check=False),
        "token has already been used",
    )
    events = json.loads(
        run_devid(
            "audit", "list", "--action", "cloud.instance_forgotten", "--target",
            facts.instance_id, "--json", "--data", served.data,
        ).stdout
    )  # fmt: skip
    (event,) = events["events"]
    assert event["actor"].startswith("cli:") and event["result"] == "ok"
    assert event["details"] == {"provisioner": "gcp"}


def test_forgetting_what_is_not_there_is_a_clear_error(served: Served) -> None:
    never = str(next(_ids))
    refused(
        cloud(served, "forget", "gcp", never, check=False),
        f"instance {never} has no certificate from provisioner 'gcp' to forget",
    )
    refused(
        cloud(served, "forget", "nobody", never, check=False),
        "no provisioner named 'nobody'",
        "the cloud provisioners (GCP) there: gcp, gcp-other",
    )
    refused(
        cloud(served, "list", "admin", check=False),
        "provisioner 'admin' is of type 'JWK', not a cloud provisioner",
    )


def test_a_token_for_another_ca_or_provisioner_gets_no_certificate(
    served: Served, metadata: GCPMetadataServer, tmp_path: Path
) -> None:
    metadata.instance = facts = instance()
    other_ca = metadata.token("https://ca.example.com:8443/1.0/sign#gcp")
    refused(
        certificate(served, metadata, tmp_path / "a", "--token", other_ca, check=False),
        "the CA refused (401)",
        "audience",
    )
    # The instance asks for gcp-other, which does not admit its project: the token,
    # bound to gcp-other, cannot be taken to gcp either (it is routed by its audience).
    refused(
        certificate(served, metadata, tmp_path / "b", provisioner="gcp-other", check=False),
        "the CA refused (403)",
        f"project {PROJECT!r} is not one provisioner 'gcp-other' admits",
    )
    assert metadata.audiences[-1] == f"{served.server.url}/1.0/sign#gcp-other"
    for_other = metadata.token(f"{served.server.url}/1.0/sign#gcp-other")
    refused(
        certificate(served, metadata, tmp_path / "c", "--token", for_other, check=False),
        f"project {PROJECT!r} is not one provisioner 'gcp-other' admits",
    )
    # None of it used the instance's first certificate.
    certificate(served, metadata, tmp_path / "d")
    assert facts.instance_id in cloud(served, "list", "gcp").stdout.split()


def test_instances_the_provisioner_does_not_admit_are_refused(
    served: Served, metadata: GCPMetadataServer, tmp_path: Path
) -> None:
    metadata.instance = instance(project_id="other-project")
    refused(
        certificate(served, metadata, tmp_path / "a", check=False),
        "the CA refused (403): project 'other-project' is not one provisioner 'gcp' admits",
    )
    metadata.instance = instance(created_at=datetime.now(UTC) - timedelta(hours=2))
    refused(
        certificate(served, metadata, tmp_path / "b", check=False),
        "the CA refused (403)",
        "longer ago than provisioner 'gcp' admits",
    )
    metadata.instance = instance(zone="asia-east1-a")
    refused(
        certificate(served, metadata, tmp_path / "c", check=False),
        "zone 'asia-east1-a' is not one provisioner 'gcp' admits",
    )


def test_the_command_names_what_it_cannot_do(
    served: Served, metadata: GCPMetadataServer, tmp_path: Path
) -> None:
    with socket.socket() as sock:  # bound, not listening: no metadata server there
        sock.bind((LOOPBACK, 0))
        nowhere = f"http://{LOOPBACK}:{sock.getsockname()[1]}"
        result = run_devid(
            "ca", "certificate", "web-1", tmp_path / "c.crt", tmp_path / "c.key",
            "--provisioner", "gcp", "--metadata-url", nowhere, *served.ca_options(),
            check=False, timeout=COMMAND_TIMEOUT,
        )  # fmt: skip
    refused(result, f"devid: not on GCP: the metadata server at {nowhere} does not answer")
    refused(
        certificate(served, metadata, tmp_path / "d", provisioner="nobody", check=False),
        "the CA has no provisioner named 'nobody' (its OIDC and GCP provisioners: gcp, gcp-other)",
    )
    refused(
        certificate(served, metadata, tmp_path / "e", provisioner="admin", check=False),
        "provisioner 'admin' is of type 'JWK'",
        "pass --token without --provisioner",
    )
