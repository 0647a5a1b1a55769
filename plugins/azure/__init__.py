"""The Azure provisioner plugin: certificates for Azure virtual machines from their
managed identity's access token and the attested document Azure's instance metadata
service signs for them (docs/cloud.md)."""

from __future__ import annotations

from collections.abc import Sequence

from plugins.api import Provisioner, hookimpl

from .provisioner import (
    DEFAULT_DURATIONS,
    AttestedDocument,
    AzureProvisioner,
    instance_uri,
    verify_attested_document,
)

__all__ = [
    "DEFAULT_DURATIONS",
    "AttestedDocument",
    "AzureProvisioner",
    "instance_uri",
    "verify_attested_document",
]


@hookimpl
def devid_provisioner_types() -> Sequence[type[Provisioner]]:
    return [AzureProvisioner]
