"""dns-01 (RFC 8555 section 8.4): a TXT record at ``_acme-challenge.DOMAIN`` must
hold base64url(SHA-256(key authorization)). Wildcards are validated at their base
name; IP identifiers have no dns-01 (RFC 8738 section 7). A refusal never repeats
what the records hold.
"""

from __future__ import annotations

import base64
import hashlib

from . import resolve
from .config import ValidationConfig
from .policy import check_name, not_an_ip
from .trace import Trace, guarded


async def validate_dns01(domain: str, key_authorization: str, config: ValidationConfig) -> None:
    """A TXT record at _acme-challenge.DOMAIN must hold base64url(SHA-256(key authorization))."""
    trace = Trace("dns-01")
    await guarded(trace, config.timeout, lambda: _dns01(domain, key_authorization, config, trace))


def _txt_digest(key_authorization: str) -> str:
    digest = hashlib.sha256(key_authorization.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def _dns01(
    domain: str, key_authorization: str, config: ValidationConfig, trace: Trace
) -> None:
    base = domain[2:] if domain.startswith("*.") else domain
    not_an_ip(base, trace)  # RFC 8738 section 7: no dns-01 for IP identifiers
    name = "_acme-challenge." + check_name(base, trace)
    trace.at(f"looking up TXT {name}", "dns")
    answer = await resolve.lookup(resolve.resolver(config, trace), name, "TXT")
    if isinstance(answer, str):
        raise trace.problem("dns", f"no TXT record at {name}: {answer}")
    expected = _txt_digest(key_authorization)
    for rdata in answer:
        if b"".join(rdata.strings) == expected.encode("ascii"):
            return
    # What the records hold is not repeated: the zone is not ours to publish.
    raise trace.problem(
        "incorrectResponse", f"no TXT record at {name} holds the expected value {expected!r}"
    )
