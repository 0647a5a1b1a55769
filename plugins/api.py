"""Everything a devid plugin imports: the public plugin API.

Import from here and nothing else of devid; a name not in ``__all__`` may change
without notice. A provisioner type subclasses :class:`Provisioner`, overrides
what it supports (everything else refuses) and is registered by a
``devid_provisioner_types`` hook implementation marked with :data:`hookimpl`.
The walk-through is docs/plugins.md; the test kit is :mod:`hosts.testing`, whose
pytest plugin (fixtures ``devid_ca``, ``devid_server``; ``check_provisioner``) pytest
loads by itself once devid is installed.

Grouped by use:

- the class and its capabilities: :class:`Provisioner`, :class:`Credential`,
  :class:`ACMEIssuing`, :class:`TokenMinter`, :data:`hookimpl`;
- what the host hands a provisioner: :class:`ProvisionerEnvironment` (with the
  read-only :class:`Lookup`), :class:`AuthorizeContext`, :class:`RenewContext`,
  :class:`CertificateFacts`, :class:`CSRInfo`, :class:`Device`, :class:`Account`;
- what a provisioner returns: :class:`Authorization` with a :class:`SignPolicy`
  and a :class:`TokenUse`, :class:`RenewAuthorization`;
- building a policy: :class:`DurationLimits`, :class:`ProvisionerRef`, the
  validators and modifiers (:class:`CommonNameIs`, :class:`SANsAre`,
  :class:`KeyTypeIn`, :class:`CSRDigestIs`, :class:`SetSubjectAndSANs`,
  :class:`SetExtendedKeyUsage`, :class:`SetKeyUsage`, :class:`SetAssurance` with an
  :class:`Assurance` marker), :class:`SAN`, :class:`KeyType`, name patterns
  (:class:`NamePatterns`) and
  EKUs by name (:func:`parse_ekus`, :func:`describe_ekus`, :data:`EKU_NAMES`);
- reading config: :class:`Options`, :func:`durations_view`;
- keys from elsewhere: :class:`RemoteKeys` (``ProvisionerEnvironment.remote_keys``: an
  OpenID provider's metadata, :class:`OpenIDProvider`, and signing keys, fetched and cached
  by the host), :func:`url_problem`, :data:`DISCOVERY_PATH`; :func:`key_nonce` (the
  ``nonce`` binding an ID token to a key) and :class:`NamesWithin` (a CSR may ask for some
  of an identity's names);
- cloud instances: :func:`read_identity_request`, :func:`verify_identity_request` and
  :class:`IdentityRequest` (an instance's evidence sent as one JWS signed by its CSR's
  key, :mod:`plugins.identity_request`), :func:`instance_nonce` (a nonce binding a
  cloud-signed document to a key and a CA provisioner), :func:`sha256_token_id` (a
  credential used once by its content); :func:`read_signed_data` and
  :class:`SignedContent` (a CMS SignedData a third party signed, read and verified);
  once a cloud vouched for an instance: :func:`instance_names`, :func:`first_use`
  (trust on first use, :data:`FIRST_USE_REMEMBERED`) and :func:`instance_policy`;
- tokens: :class:`CompactJWS` (a parsed token), :func:`check_registered_claims`,
  :func:`check_token_times`, :func:`subject_and_sans`,
  :func:`csr_binding`, :func:`sign_token_claims`, :func:`read_jose_credential`,
  :func:`jose_token`, :data:`LEEWAY`; minting the JWK and X5C provisioners' tokens:
  :func:`mint_token`, :func:`mint_x5c_token`, :func:`x5c_header` (these and
  :func:`sign_token_claims` live in :mod:`plugins.minting`, which a device imports
  without the rest of this API);
- refusing: :class:`ProtocolError` and its kinds :class:`BadRequest` (400),
  :class:`Unauthorized` (401), :class:`Forbidden` (403), :class:`ServiceUnavailable` (503:
  something from elsewhere is missing now), and
  :class:`ConfigurationError` for a bad ``[[provisioners]]`` table;
- renewal and state helpers: :func:`require_active_device`,
  :func:`require_active_leaf`, :func:`registered_device` (the active device behind a
  device certificate, read through a :class:`Lookup`), :func:`verify_certificate_token`
  (an x5c token verified to given roots, :class:`X5CToken`), :func:`parse_x5c`
  (the certificates of an ``x5c`` header, unverified), :func:`check_roots` (trust
  anchors from config), :func:`fingerprint` (a certificate's SHA-256, hex);
- SCEP enrolment (``scep()``): :class:`SCEPEnrolling`, :class:`SCEPRequest`,
  :class:`ChallengeQuery` (what ``devid_scep_challenge`` hooks judge), :class:`Webhook`,
  :class:`ContentEncryption`, :data:`CHALLENGE_METHODS`, :class:`SCEPIdentity` (an RA
  certificate and its key);
- attestation formats (device-attest-01): :class:`AttestationFormat`,
  :class:`AttestationContext`, :class:`AttestationResult`.
"""

from __future__ import annotations

from engine.accounts import Account
from engine.assurance import Assurance, SetAssurance
from engine.csr import CSRInfo
from engine.errors import (
    BadRequest,
    ConfigurationError,
    Forbidden,
    ProtocolError,
    ServiceUnavailable,
    Unauthorized,
)
from engine.extensions import ProvisionerRef
from engine.inventory import Device
from engine.jose import SIGNATURE_ALGORITHMS as JWS_ALGORITHMS
from engine.jose import CompactJWS
from engine.keys import KeyType
from engine.names import SAN
from engine.policy import (
    CommonNameIs,
    CSRDigestIs,
    DurationLimits,
    KeyTypeIn,
    SANsAre,
    SetSubjectAndSANs,
    SignPolicy,
    TemplateModifier,
    Validator,
)
from engine.scep import ContentEncryption
from engine.scep import Signer as SCEPIdentity

from .attestation.base import AttestationContext, AttestationFormat, AttestationResult
from .base import ACMEIssuing, Credential, Provisioner, TokenMinter
from .certificate_tokens import X5CToken, verify_certificate_token
from .certpaths import check_roots, fingerprint, parse_x5c
from .enrolment import CHALLENGE_METHODS, ChallengeQuery, SCEPEnrolling, SCEPRequest, Webhook
from .hookspecs import hookimpl
from .identity_request import (
    IdentityRequest,
    read_identity_request,
    sha256_token_id,
    verify_identity_request,
)
from .instances import FIRST_USE_REMEMBERED, first_use, instance_names, instance_policy
from .minting import instance_nonce, key_nonce, mint_token, mint_x5c_token, x5c_header
from .options import Options, durations_view
from .policy import (
    EKU_NAMES,
    NamePatterns,
    NamesWithin,
    SetExtendedKeyUsage,
    SetKeyUsage,
    describe_ekus,
    parse_ekus,
)
from .provisioner import (
    Authorization,
    AuthorizeContext,
    CertificateFacts,
    Lookup,
    ProvisionerEnvironment,
    RenewAuthorization,
    RenewContext,
    TokenUse,
    registered_device,
    require_active_device,
    require_active_leaf,
)
from .remote import DISCOVERY_PATH, OpenIDProvider, RemoteKeys, url_problem
from .signed_data import SignedContent, read_signed_data
from .tokens import (
    LEEWAY,
    TokenTimes,
    check_registered_claims,
    check_token_times,
    csr_binding,
    jose_token,
    read_jose_credential,
    sign_token_claims,
    subject_and_sans,
    verify_remote_token,
)

__all__ = [
    "CHALLENGE_METHODS",
    "DISCOVERY_PATH",
    "EKU_NAMES",
    "FIRST_USE_REMEMBERED",
    "JWS_ALGORITHMS",
    "LEEWAY",
    "SAN",
    "ACMEIssuing",
    "Account",
    "Assurance",
    "AttestationContext",
    "AttestationFormat",
    "AttestationResult",
    "Authorization",
    "AuthorizeContext",
    "BadRequest",
    "CSRDigestIs",
    "CSRInfo",
    "CertificateFacts",
    "ChallengeQuery",
    "CommonNameIs",
    "CompactJWS",
    "ConfigurationError",
    "ContentEncryption",
    "Credential",
    "Device",
    "DurationLimits",
    "Forbidden",
    "IdentityRequest",
    "KeyType",
    "KeyTypeIn",
    "Lookup",
    "NamePatterns",
    "NamesWithin",
    "OpenIDProvider",
    "Options",
    "ProtocolError",
    "Provisioner",
    "ProvisionerEnvironment",
    "ProvisionerRef",
    "RemoteKeys",
    "RenewAuthorization",
    "RenewContext",
    "SANsAre",
    "SCEPEnrolling",
    "SCEPIdentity",
    "SCEPRequest",
    "ServiceUnavailable",
    "SetAssurance",
    "SetExtendedKeyUsage",
    "SetKeyUsage",
    "SetSubjectAndSANs",
    "SignPolicy",
    "SignedContent",
    "TemplateModifier",
    "TokenMinter",
    "TokenTimes",
    "TokenUse",
    "Unauthorized",
    "Validator",
    "Webhook",
    "X5CToken",
    "check_registered_claims",
    "check_roots",
    "check_token_times",
    "csr_binding",
    "describe_ekus",
    "durations_view",
    "fingerprint",
    "first_use",
    "hookimpl",
    "instance_names",
    "instance_nonce",
    "instance_policy",
    "jose_token",
    "key_nonce",
    "mint_token",
    "mint_x5c_token",
    "parse_ekus",
    "parse_x5c",
    "read_identity_request",
    "read_jose_credential",
    "read_signed_data",
    "registered_device",
    "require_active_device",
    "require_active_leaf",
    "sha256_token_id",
    "sign_token_claims",
    "subject_and_sans",
    "url_problem",
    "verify_certificate_token",
    "verify_identity_request",
    "verify_remote_token",
    "x5c_header",
]
