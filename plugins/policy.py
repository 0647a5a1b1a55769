"""Policy helpers provisioner types share: which names a provisioner will certify
(``allowed_subjects``, ``allowed_sans``; :class:`NamesWithin` for a CSR that may ask for
some of an identity's names) and which extended key usages its certificates carry.

``allowed_subjects`` and ``allowed_sans``:

A pattern is either a CIDR range (``10.0.0.0/8``, ``fd00::/8``), which matches
IP addresses inside it, or a glob in which ``*`` stands for one or more of any
characters (dots included) and everything else is literal. DNS names and
email addresses are compared case-insensitively (they are normalized to lower
case); subjects, URIs and IP addresses exactly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import attrs
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from engine.csr import CSRInfo
from engine.errors import ConfigurationError, Forbidden
from engine.names import SAN, SANKind
from engine.template import CertificateTemplate

MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 256


@attrs.frozen
class NamePattern:
    text: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    @classmethod
    def parse(cls, text: str) -> NamePattern:
        if "/" in text and "://" not in text:
            try:
                return cls(text, ipaddress.ip_network(text, strict=False))
            except ValueError:
                pass
        return cls(text)

    def matches(self, value: str, *, fold_case: bool = False) -> bool:
        if self.network is not None:
            try:
                return ipaddress.ip_address(value) in self.network
            except ValueError:
                return False
        pattern = self.text.lower() if fold_case else self.text
        return _glob(pattern, value.lower() if fold_case else value)


def _glob(pattern: str, value: str) -> bool:
    """Whether *value* matches *pattern*, ``*`` standing for one or more characters.

    Two pointers with backtracking to the last ``*``: O(len(pattern) * len(value)),
    never exponential, whatever the operator wrote.
    """
    p = v = 0
    star = -1  # index in pattern just after the last '*'
    resume = 0  # where in value that '*' match may be extended from
    while v < len(value):
        if p < len(pattern) and pattern[p] == "*":
            # '*' takes one character now, then may take more on backtrack.
            star = p + 1
            resume = v + 1
            p += 1
            v += 1
        elif p < len(pattern) and pattern[p] == value[v]:
            p += 1
            v += 1
        elif star != -1:
            p = star
            resume += 1
            v = resume
        else:
            return False
    return p == len(pattern)  # a '*' left over would still need a character


@attrs.frozen
class NamePatterns:
    """A list of patterns; empty means no restriction."""

    patterns: tuple[NamePattern, ...] = ()

    @classmethod
    def parse(cls, texts: Sequence[str], where: str) -> NamePatterns:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ConfigurationError(f"{where} must be a list of strings")
        if len(texts) > MAX_PATTERNS:
            raise ConfigurationError(f"{where} holds more than {MAX_PATTERNS} patterns")
        out = []
        for text in texts:
            if not text or len(text) > MAX_PATTERN_LENGTH:
                raise ConfigurationError(
                    f"{where}: patterns must be 1 to {MAX_PATTERN_LENGTH} characters"
                )
            out.append(NamePattern.parse(text))
        return cls(tuple(out))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def texts(self) -> list[str]:
        return [p.text for p in self.patterns]

    def allows_subject(self, subject: str) -> bool:
        return not self.patterns or any(p.matches(subject) for p in self.patterns)

    def allows_san(self, san: SAN) -> bool:
        fold = san.kind in (SANKind.DNS, SANKind.EMAIL)
        return not self.patterns or any(p.matches(san.value, fold_case=fold) for p in self.patterns)


# --- extended key usages ---------------------------------------------------------------

EKU_NAMES: dict[str, x509.ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}
_EKU_LABELS = {oid: name for name, oid in EKU_NAMES.items()}


def describe_ekus(ekus: Sequence[x509.ObjectIdentifier]) -> list[str]:
    """EKUs as config names them: by name where they have one, else dotted."""
    return [_EKU_LABELS.get(oid, oid.dotted_string) for oid in ekus]


def parse_ekus(
    values: Sequence[x509.ObjectIdentifier | str], where: str
) -> tuple[x509.ObjectIdentifier, ...]:
    """EKUs by name (``clientAuth``, ``serverAuth``, ...), dotted OID or ObjectIdentifier."""
    if isinstance(values, str):
        raise ConfigurationError(f"{where}: ekus must be a list")
    out: list[x509.ObjectIdentifier] = []
    for value in values:
        if isinstance(value, x509.ObjectIdentifier):
            oid = value
        elif isinstance(value, str) and value in EKU_NAMES:
            oid = EKU_NAMES[value]
        else:
            try:
                oid = x509.ObjectIdentifier(str(value))
            except ValueError:
                known = ", ".join(EKU_NAMES)
                raise ConfigurationError(
                    f"{where}: unknown EKU {value!r} (use {known} or a dotted OID)"
                ) from None
        if oid not in out:
            out.append(oid)
    if not out:
        raise ConfigurationError(f"{where}: at least one EKU is required")
    return tuple(out)


@attrs.frozen
class SetExtendedKeyUsage:
    """Template modifier: the certificate's EKUs are the provisioner's, whatever the CSR asked."""

    ekus: tuple[x509.ObjectIdentifier, ...]

    def modify(self, template: CertificateTemplate) -> CertificateTemplate:
        return template.evolve(extended_key_usage=self.ekus)


@attrs.frozen
class SetKeyUsage:
    """Template modifier: the certificate's key usage is exactly *usages* (names from
    ``engine.template.KEY_USAGES``: ``digital_signature``, ``key_encipherment``, …)."""

    usages: frozenset[str]

    def modify(self, template: CertificateTemplate) -> CertificateTemplate:
        return template.evolve(key_usage=self.usages)


# --- names a credential allows, of which the CSR may ask any ---------------------------------


@attrs.frozen
class NamesWithin:
    """Validator: the CSR asks only for names among *sans* (any subset, none included),
    and its common name, if it has one, is one of *common_names* or of the SANs' values.

    For credentials that vouch for an identity with several names (a person's email,
    their subject URI): the certificate carries the names the template modifiers set,
    and a CSR naming anything else is refused with every name it may not have.
    """

    sans: frozenset[SAN]
    common_names: frozenset[str] = frozenset()

    def validate(self, csr: CSRInfo) -> None:
        if csr.other_names:
            raise Forbidden("CSR names an otherName SAN, which this credential does not authorize")
        extra = sorted(str(s) for s in frozenset(csr.sans) - self.sans)
        if extra:
            raise Forbidden(
                f"CSR names that this credential does not authorize: {', '.join(extra)}"
            )
        cn = csr.common_name
        if (
            cn is not None
            and cn not in self.common_names
            and not any(cn.lower() == s.value.lower() for s in self.sans)
        ):
            raise Forbidden(f"CSR common name {cn!r} is not a name this credential authorizes")
