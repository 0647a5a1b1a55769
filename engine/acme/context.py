"""What every ACME operation is handed: the provisioner's profile, URLs, time, randomness."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import attrs

from ..jose import b64url_encode
from ..policy import DurationLimits
from ..ports import Random
from .identifiers import IdentifierPolicy
from .resources import URLs

ID_BYTES = 16
TOKEN_BYTES = 32


@attrs.frozen
class Profile:
    """An ACME provisioner as the protocol sees it (pure data, built from its config)."""

    name: str
    identifiers: IdentifierPolicy
    require_eab: bool = False
    eab_keys: Mapping[str, bytes] = attrs.field(factory=dict, repr=False)
    order_lifetime: timedelta = timedelta(hours=24)
    durations: DurationLimits = attrs.field(factory=DurationLimits)
    website: str | None = None
    terms_of_service: str | None = None

    @property
    def challenges(self) -> frozenset[str]:
        return self.identifiers.challenges


@attrs.frozen(eq=False)
class Context:
    """One request (or one validation result): where, when, and a source of randomness."""

    profile: Profile
    urls: URLs
    now: datetime
    random: Random

    def new_id(self) -> str:
        return b64url_encode(self.random.bytes(ID_BYTES))

    def new_token(self) -> str:
        return b64url_encode(self.random.bytes(TOKEN_BYTES))
