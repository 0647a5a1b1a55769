"""The X5C provisioner plugin: one-time tokens signed by the key of a trusted certificate."""

from __future__ import annotations

from collections.abc import Sequence

from plugins.api import Provisioner, SetExtendedKeyUsage, X5CToken, hookimpl

from .provisioner import X5CNames, X5CProvisioner
from .tokens import mint_x5c_token, x5c_header

__all__ = [
    "SetExtendedKeyUsage",
    "X5CNames",
    "X5CProvisioner",
    "X5CToken",
    "mint_x5c_token",
    "x5c_header",
]


@hookimpl
def devid_provisioner_types() -> Sequence[type[Provisioner]]:
    return [X5CProvisioner]
