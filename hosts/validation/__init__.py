"""Outbound ACME challenge validation: http-01, dns-01 (RFC 8555 8.3, 8.4) and
tls-alpn-01 (RFC 8737), for DNS names and IP addresses (RFC 8738).

The ACME server (:mod:`hosts.service.acme.runner`) hands each challenge a client
answered to :func:`validate_over_network`, with the operator's
:class:`ValidationConfig` (``[acme]`` in devid.toml, then the ``devid serve``
flags). A check returns ``None`` when the challenge is met and raises
:class:`~engine.acme.problems.ACMEProblem` otherwise; nothing else escapes
(cancellation from the caller excepted), and each run is bounded by
``config.timeout`` as a whole.

Outbound connections are an SSRF path (SECURITY.md, "ACME challenges"): the
account holder chooses where we connect. Problem details therefore say what was
wrong (a status, a refused redirect, a body that is not the key authorization)
and never carry what the target sent: no body, header, redirect target, protocol
banner, TXT value or certificate content.

One module per concern, each depending only on those above it:

* :mod:`.trace`: what a run is doing, and how its failures become problems;
* :mod:`.policy`: which identifiers are accepted and which addresses may be
  contacted (:data:`DEFAULT_DENY`, ``allow_private``);
* :mod:`.config`: :class:`ValidationConfig` and its parsing from ``[acme]``;
* :mod:`.resolve`: name lookups through dnspython on trio (``dns_resolver``
  answers every lookup when set);
* :mod:`.dial`: resolving, vetting and connecting; every connection goes to a
  vetted address, and nothing re-resolves a name;
* :mod:`.http01`, :mod:`.dns01`, :mod:`.tlsalpn01`: one challenge type each;
* :mod:`.validator`: a challenge job to the check for its type.

The package depends on the engine and :mod:`plugins.options` only.
"""

from .config import ValidationConfig
from .policy import DEFAULT_DENY
from .validator import ChallengeValidator, validate_over_network

__all__ = ["DEFAULT_DENY", "ChallengeValidator", "ValidationConfig", "validate_over_network"]
