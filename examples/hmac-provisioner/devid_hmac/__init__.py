"""devid_hmac: a devid provisioner type for one-time HS256 tokens made with a shared secret.

devid loads this module through the ``devid`` entry point in pyproject.toml and
calls :func:`devid_provisioner_types`; clients that hold the secret mint tokens
with :func:`mint_token`. The walk-through is devid's docs/plugins.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from plugins.api import Provisioner, hookimpl

from .provisioner import HMACProvisioner, NamePattern
from .tokens import mint_token, read_token

__all__ = ["HMACProvisioner", "NamePattern", "devid_provisioner_types", "mint_token", "read_token"]


@hookimpl
def devid_provisioner_types() -> Sequence[type[Provisioner]]:
    """The provisioner types this plugin provides: ``HMAC``."""
    return [HMACProvisioner]
