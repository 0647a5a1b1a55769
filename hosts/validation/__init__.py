"""Outbound ACME challenge validation: http-01, dns-01 and tls-alpn-01."""

from .config import ChallengeValidator, ValidationConfig, parse_host_port, validate_over_network
from .http01 import DEFAULT_DENY

__all__ = [
    "DEFAULT_DENY",
    "ChallengeValidator",
    "ValidationConfig",
    "parse_host_port",
    "validate_over_network",
]
