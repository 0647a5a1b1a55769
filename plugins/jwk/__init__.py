"""The JWK provisioner plugin: one-time tokens signed by a provisioner key."""

from __future__ import annotations

from collections.abc import Sequence

from plugins.api import Provisioner, hookimpl

from .provisioner import JWKProvisioner
from .tokens import mint_token

__all__ = ["JWKProvisioner", "mint_token"]


@hookimpl
def devid_provisioner_types() -> Sequence[type[Provisioner]]:
    return [JWKProvisioner]
