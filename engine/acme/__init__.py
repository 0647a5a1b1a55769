"""The ACME server (RFC 8555) as pure operations over frozen records.

Modules, one concept each: :mod:`.jws` (request signatures), :mod:`.nonces`,
:mod:`.identifiers` (and the identifier policy), :mod:`.records` and
:mod:`._state` (the objects and every transition), :mod:`.accounts`,
:mod:`.orders`, :mod:`.challenges`, :mod:`.device_attest`, :mod:`.finalize`
(the sign-policy parts of an order), :mod:`.revocation`, :mod:`.renewal`
(RFC 9773), :mod:`.resources` (URLs and JSON) and :mod:`.effects` (what the
host is asked to do). Hosts read records, call an operation, and execute the
:class:`~engine.acme.effects.Outcome` it returns.
"""
