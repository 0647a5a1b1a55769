"""The AWS provisioner plugin: certificates for Amazon EC2 instances from the instance
identity documents AWS signs for them (docs/cloud.md)."""

from __future__ import annotations

from collections.abc import Sequence

from plugins.api import Provisioner, hookimpl

from .provisioner import (
    DEFAULT_DURATIONS,
    FORMS,
    AWSProvisioner,
    instance_uri,
    private_dns_name,
    read_region_certificates,
)

__all__ = [
    "DEFAULT_DURATIONS",
    "FORMS",
    "AWSProvisioner",
    "instance_uri",
    "private_dns_name",
    "read_region_certificates",
]


@hookimpl
def devid_provisioner_types() -> Sequence[type[Provisioner]]:
    return [AWSProvisioner]
