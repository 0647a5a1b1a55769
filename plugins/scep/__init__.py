"""The SCEP provisioner plugin (RFC 8894): enrolment with a challenge, for MDMs and
network gear. The protocol itself is served by the host at ``/scep/{name}``."""

from __future__ import annotations

from collections.abc import Sequence

from plugins.api import Provisioner, hookimpl

from .provisioner import ALL_CAPABILITIES, DEFAULT_DURATIONS, SCEPProvisioner

__all__ = ["ALL_CAPABILITIES", "DEFAULT_DURATIONS", "SCEPProvisioner"]


@hookimpl
def devid_provisioner_types() -> Sequence[type[Provisioner]]:
    return [SCEPProvisioner]
