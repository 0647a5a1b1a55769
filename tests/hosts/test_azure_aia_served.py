"""An Azure provisioner configured with its roots only (no ``intermediates``) issues a
certificate to a virtual machine whose metadata service signs under a chain of Microsoft's
shape (root → middle CA → issuing CA → signer): ``devid serve``, on both hosts, fetches
the two intermediate CAs from the AIA caIssuers URLs of the signer and of the issuing CA
(served as DER by the loopback metadata server, the provisioner's only
``intermediate_hosts``), and keeps them: a second machine's request fetches nothing.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import tomli_w

from hosts.testing.metadata import AzureMetadataServer
from hosts.testing.servers import HOSTS, clean_env, devid_serve
from tests.conftest import CA
from tests.hosts.test_cloud_aws_azure_cli import (
    RESOURCE,
    SUBSCRIPTION,
    TENANT,
    Served,
    certificate,
    leaf,
    names,
    vm,
)


@attrs.frozen
class AIAServed:
    served: Served
    imds: AzureMetadataServer


@pytest.fixture(scope="module", params=HOSTS)
def aia_served(
    request: pytest.FixtureRequest, _ca_template: CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AIAServed]:
    """A CA whose provisioner ``azure-aia`` trusts the metadata server's root only, served
    by ``devid serve`` on one host, and that metadata server (AIA URLs on loopback)."""
    host = str(request.param)
    work = tmp_path_factory.mktemp(f"azure-aia-{host}")
    data = work / "ca"
    shutil.copytree(_ca_template.data_dir, data)
    with AzureMetadataServer(vm(), middle_ca=True, aia=True) as imds:
        roots = imds.roots_file(data / "cloud").relative_to(data)
        config_path = data / "devid.toml"
        config = tomllib.loads(config_path.read_text())
        config.setdefault("provisioners", []).append(
            {
                "type": "Azure",
                "name": "azure-aia",
                "issuer": "tls",
                "tenant_id": TENANT,
                "resource": RESOURCE,
                "subscriptions": [SUBSCRIPTION],
                "roots": [str(roots)],
                "intermediate_hosts": ["127.0.0.1"],
                "jwks_url": imds.jwks_url,
            }
        )
        config_path.write_text(tomli_w.dumps(config))
        root = data / _ca_template.root_path.relative_to(_ca_template.data_dir)
        env = clean_env(DEVID_PASSWORD=_ca_template.password.decode())
        with devid_serve(data, work / "serve.log", host=host, root=root, env=env) as server:
            yield AIAServed(Served(server, root, data), imds)


def test_intermediates_are_fetched_from_the_aia_once(aia_served: AIAServed, tmp_path: Path) -> None:
    served, imds = aia_served.served, aia_served.imds
    imds.instance = first = vm()
    certificate(served, imds, tmp_path / "first", subject="web-1", provisioner="azure-aia")
    assert names(leaf(tmp_path / "first"))[1] >= {f"uri:urn:uuid:{first.vm_id}"}
    assert imds.pki_requests == ["issuing", "middle"]

    imds.instance = second = vm(vm_name="web-2")
    certificate(served, imds, tmp_path / "second", subject="web-2", provisioner="azure-aia")
    assert names(leaf(tmp_path / "second"))[1] >= {f"uri:urn:uuid:{second.vm_id}"}
    assert imds.pki_requests == ["issuing", "middle"]  # kept by the host, not fetched again
