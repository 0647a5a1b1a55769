"""``allowed_subjects`` and ``allowed_sans``: which names an X5C provisioner will certify.

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

from engine.errors import ConfigurationError
from engine.names import SAN, SANKind

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
