"""The OIDC provisioner plugin: certificates for people through the organisation's
OpenID provider (single sign-on); ``devid login`` is its client."""

from __future__ import annotations

from collections.abc import Sequence

from plugins.api import Provisioner, hookimpl

from .provisioner import DEFAULT_DURATIONS, OIDCProvisioner

__all__ = ["DEFAULT_DURATIONS", "OIDCProvisioner"]


@hookimpl
def devid_provisioner_types() -> Sequence[type[Provisioner]]:
    return [OIDCProvisioner]
