"""The JWK provisioner plugin: one-time tokens signed by a provisioner key."""

from __future__ import annotations

from collections.abc import Sequence

from plugins.hookspecs import hookimpl
from plugins.provisioner import ProvisionerType

from .provisioner import JWKProvisioner
from .tokens import mint_token

__all__ = ["JWKProvisioner", "mint_token"]


@hookimpl
def devid_provisioner_types() -> Sequence[type[ProvisionerType]]:
    return [JWKProvisioner]
