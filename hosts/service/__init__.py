"""The CA's use cases: typed requests in, typed results out.

Each module is one capability (signing, renewal, revocation, attestation, inventory,
accounts, admin, ACME). They share :class:`hosts.service.ca.CA` (issuers, provisioners,
stores, plugins, clock, endpoints) and never the HTTP wire format, which is
``hosts.http``'s. ``hosts.core.authority`` builds them; docs/architecture.md draws
the layers.
"""
