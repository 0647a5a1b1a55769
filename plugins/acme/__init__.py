"""The ACME provisioner plugin: RFC 8555 with http-01, dns-01, tls-alpn-01 and
device-attest-01, served at ``/acme/{name}/directory``."""

from __future__ import annotations

from collections.abc import Sequence

from plugins.api import Provisioner, hookimpl

from .provisioner import ACMEProvisioner

__all__ = ["ACMEProvisioner"]


@hookimpl
def devid_provisioner_types() -> Sequence[type[Provisioner]]:
    return [ACMEProvisioner]
