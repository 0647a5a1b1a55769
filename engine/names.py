"""Subject alternative names in one normalized form shared by tokens, CSRs and templates."""

from __future__ import annotations

import enum
import ipaddress
import re
from email.utils import parseaddr

import attrs
from cryptography import x509

from .errors import BadRequest

# Letters, digits, hyphens (not at the ends) and underscores (service labels), or "*".
_DIGITS = frozenset("0123456789")
_DNS_LABEL = re.compile(r"^(\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$")


class SANKind(enum.Enum):
    DNS = "dns"
    IP = "ip"
    EMAIL = "email"
    URI = "uri"


@attrs.frozen(order=True)
class SAN:
    kind: SANKind = attrs.field(order=lambda k: k.value)
    value: str

    @classmethod
    def parse(cls, text: str) -> SAN:
        """Classify a name the way a token's ``sans`` claim writes it."""
        if not isinstance(text, str) or not text or len(text) > 1024:
            raise BadRequest(f"invalid subject alternative name {text!r}")
        if not text.isascii():
            # X.509 encodes these as IA5String: IDNs must arrive as A-labels (xn--...).
            raise BadRequest(f"subject alternative name {text!r} must be ASCII (use A-labels)")
        if ":" in text or text[0] in _DIGITS:  # no IP address has neither
            try:
                return cls(SANKind.IP, str(ipaddress.ip_address(text)))
            except ValueError:
                pass
        if "://" in text or text.lower().startswith("urn:"):
            return cls(SANKind.URI, text)
        if "@" in text:
            # What X.509's rfc822Name takes: an address alone, no display name or
            # comment (RFC 5322 parsing, as cryptography checks it when it encodes).
            name, address = parseaddr(text)
            if name or address != text or text.count("@") != 1:
                raise BadRequest(f"invalid email address {text!r}")
            return cls(SANKind.EMAIL, text.lower())
        name = text.lower().rstrip(".")
        labels = name.split(".")
        if len(name) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
            raise BadRequest(f"invalid DNS name {text!r}")
        if "*" in name and (labels[0] != "*" or len(labels) < 3):
            raise BadRequest(f"invalid wildcard {text!r}: only a leftmost '*.' label is allowed")
        return cls(SANKind.DNS, name)

    @classmethod
    def from_general_name(cls, name: x509.GeneralName) -> SAN:
        if isinstance(name, x509.DNSName):
            return cls(SANKind.DNS, name.value.lower().rstrip("."))
        if isinstance(name, x509.IPAddress):
            return cls(SANKind.IP, str(name.value))
        if isinstance(name, x509.RFC822Name):
            return cls(SANKind.EMAIL, name.value.lower())
        if isinstance(name, x509.UniformResourceIdentifier):
            return cls(SANKind.URI, name.value)
        raise BadRequest(f"unsupported subject alternative name type {type(name).__name__}")

    def to_general_name(self) -> x509.GeneralName:
        if self.kind is SANKind.DNS:
            return x509.DNSName(self.value)
        if self.kind is SANKind.IP:
            return x509.IPAddress(ipaddress.ip_address(self.value))
        if self.kind is SANKind.EMAIL:
            return x509.RFC822Name(self.value)
        return x509.UniformResourceIdentifier(self.value)

    def __str__(self) -> str:
        return self.value
