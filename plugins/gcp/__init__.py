"""The GCP provisioner plugin: certificates for Google Compute Engine instances from the
instance identity tokens Google signs for them (docs/cloud.md)."""

from __future__ import annotations

from collections.abc import Sequence

from plugins.api import Provisioner, hookimpl

from .provisioner import DEFAULT_DURATIONS, GCPProvisioner, instance_uri

__all__ = ["DEFAULT_DURATIONS", "GCPProvisioner", "instance_uri"]


@hookimpl
def devid_provisioner_types() -> Sequence[type[Provisioner]]:
    return [GCPProvisioner]
