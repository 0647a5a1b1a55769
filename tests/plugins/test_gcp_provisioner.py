"""The GCP provisioner's decisions, in process: instance identity tokens signed here with
RSA keys a stand-in for the host's key cache hands out.

401 for a token that is forged, expired, asked for another CA or provisioner, from
another issuer, or signed with another algorithm; 403 for a valid token of an instance
the policy does not admit (project, zone, service account, age, names).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.csr import CSRInfo, parse_csr
from engine.errors import ConfigurationError, Forbidden, ServiceUnavailable, Unauthorized
from engine.jose import PrivateKey, sign_compact
from engine.names import SAN, SANKind
from engine.template import CertificateTemplate
from hosts.testing.keys import StaticRemoteKeys
from plugins.api import (
    Assurance,
    AuthorizeContext,
    Credential,
    ProvisionerEnvironment,
)
from plugins.gcp import GCPProvisioner
from plugins.oidc import OIDCProvisioner

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SIGN_URL = "https://ca.example.com:8443/1.0/sign"
OTHER_URL = "https://127.0.0.1:8443/1.0/sign"
AUDIENCE = SIGN_URL + "#gce"
JWKS = "https://www.googleapis.com/oauth2/v3/certs"
ACCOUNT = "app@prod-123456.iam.gserviceaccount.com"
CREATED = int((NOW - timedelta(minutes=10)).timestamp())
OWN_NAMES = (
    SAN(SANKind.DNS, "web-1.c.prod-123456.internal"),
    SAN(SANKind.DNS, "web-1.europe-west1-b.c.prod-123456.internal"),
    SAN(SANKind.URI, "gce://prod-123456/europe-west1-b/4567890123456789012"),
)


class Google:
    """Google's side: its RSA key, and instance identity tokens signed with it."""

    def __init__(self, keys: StaticRemoteKeys) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        keys.keys["g-1"] = self.key.public_key()

    def token(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        instance: Mapping[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        drop_instance: tuple[str, ...] = (),
        key: PrivateKey | None = None,
        kid: str = "g-1",
        alg: str | None = None,
    ) -> str:
        now = int(NOW.timestamp())
        facts: dict[str, Any] = {
            "instance_creation_timestamp": CREATED,
            "instance_id": "4567890123456789012",
            "instance_name": "web-1",
            "project_id": "prod-123456",
            "project_number": 123456789012,
            "zone": "europe-west1-b",
        }
        facts.update(instance or {})
        for name in drop_instance:
            facts.pop(name, None)
        body: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "azp": "112233445566778899000",
            "sub": "112233445566778899000",
            "email": ACCOUNT,
            "email_verified": True,
            "iat": now - 10,
            "exp": now - 10 + 3600,
            "google": {"compute_engine": facts},
        }
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        return sign_compact(body, key or self.key, alg=alg, headers={"kid": kid, "typ": "JWT"})


@pytest.fixture
def keys() -> StaticRemoteKeys:
    return StaticRemoteKeys(discovery=False)


@pytest.fixture
def google(keys: StaticRemoteKeys) -> Google:
    return Google(keys)


def make(keys: StaticRemoteKeys | None, **options: Any) -> GCPProvisioner:
    table: dict[str, Any] = {"type": "GCP", "name": "gce", "projects": ["prod-123456"]}
    table.update(options)
    env = ProvisionerEnvironment(
        data_dir=Path("unused-data-dir"), issuers=frozenset({"tls", "agent"}), remote_keys=keys
    )
    return GCPProvisioner.from_config("gce", table, env)


def csr_for(common_name: str | None = None, sans: tuple[str, ...] = ()) -> CSRInfo:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([SAN.parse(s).to_general_name() for s in sans]),
            critical=False,
        )
    return parse_csr(builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER))


def ctx(now: datetime = NOW) -> AuthorizeContext:
    return AuthorizeContext(now=now, audiences=frozenset({SIGN_URL, OTHER_URL}))


def sign(prov: GCPProvisioner, token: str, csr: CSRInfo | None = None, now: datetime = NOW) -> Any:
    reading = GCPProvisioner.read_credential(token)
    assert reading is not None
    assert reading.provisioner == prov.name
    info = csr if csr is not None else csr_for()
    authorization = prov.authorize_sign(reading, info, ctx(now))
    for validator in authorization.policy.validators:
        validator.validate(info)
    return authorization


def forced(prov: GCPProvisioner, token: str) -> Any:
    """Authorize *token* with this provisioner whatever it addresses."""
    reading = GCPProvisioner.read_credential(token)
    jws = reading.reading if reading is not None else None
    credential = Credential(text=token, provisioner=prov.name, reading=jws)
    return prov.authorize_sign(credential, csr_for(), ctx())


def certificate(authorization: Any) -> CertificateTemplate:
    template = CertificateTemplate(subject=x509.Name([]))
    for modifier in authorization.policy.modifiers:
        template = modifier.modify(template)
    return template


def common_name(template: CertificateTemplate) -> str | None:
    cn = template.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else None


# --- what a valid token gets ------------------------------------------------------------------


def test_an_admitted_instance_gets_its_own_names(keys: StaticRemoteKeys, google: Google) -> None:
    auth = sign(make(keys), google.token())
    template = certificate(auth)
    assert common_name(template) == "web-1"
    assert template.sans == OWN_NAMES
    assert auth.policy.issuer == "tls"
    assert Assurance.CLOUD_INSTANCE in [getattr(m, "level", None) for m in auth.policy.modifiers]
    assert Assurance.CLOUD_INSTANCE.label == "cloud-instance"
    assert Assurance.CLOUD_INSTANCE.oid.dotted_string.endswith(".2.9")
    ekus = next(m.ekus for m in auth.policy.modifiers if hasattr(m, "ekus"))
    assert set(ekus) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    assert auth.policy.evidence == {
        "method": "gcp-instance-identity",
        "project": "prod-123456",
        "zone": "europe-west1-b",
        "instance_id": "4567890123456789012",
        "instance_name": "web-1",
        "service_account": ACCOUNT,
        "token": "instance:4567890123456789012",
    }
    assert keys.asked == [(JWKS, "g-1", "RS256")]
    assert auth.policy.durations.default == timedelta(hours=24)


def test_every_audience_of_this_ca_is_accepted(keys: StaticRemoteKeys, google: Google) -> None:
    sign(make(keys), google.token({"aud": OTHER_URL + "#gce"}))


def test_the_instance_name_is_lowercased(keys: StaticRemoteKeys, google: Google) -> None:
    auth = sign(make(keys), google.token(instance={"instance_name": "Web-1"}))
    assert common_name(certificate(auth)) == "web-1"


def test_trust_on_first_use_remembers_the_instance(keys: StaticRemoteKeys, google: Google) -> None:
    auth = sign(make(keys), google.token())
    assert auth.token.provisioner == "gce"
    assert auth.token.token_id == "instance:4567890123456789012"
    assert auth.token.expires_at > NOW + timedelta(days=365 * 99)
    # Another token of the same instance is recorded under the same use: the host
    # refuses it as used.
    later = google.token({"iat": int(NOW.timestamp()) + 5, "exp": int(NOW.timestamp()) + 3605})
    assert sign(make(keys), later).token.token_id == auth.token.token_id


def test_without_trust_on_first_use_each_token_is_used_once(
    keys: StaticRemoteKeys, google: Google
) -> None:
    token = google.token()
    auth = sign(make(keys, trust_on_first_use=False), token)
    assert auth.token.token_id == "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    assert auth.token.expires_at == NOW - timedelta(seconds=10) + timedelta(seconds=3660)


def test_a_csr_may_ask_for_some_of_the_instances_names(
    keys: StaticRemoteKeys, google: Google
) -> None:
    csr = csr_for("web-1", ("web-1.c.prod-123456.internal",))
    assert certificate(sign(make(keys), google.token(), csr)).sans == OWN_NAMES


def test_allowed_names_admit_extra_names(keys: StaticRemoteKeys, google: Google) -> None:
    prov = make(keys, allowed_names=["*.svc.example.com"])
    csr = csr_for("api.svc.example.com", ("api.svc.example.com", "web-1.c.prod-123456.internal"))
    template = certificate(sign(prov, google.token(), csr))
    assert template.sans == (*OWN_NAMES, SAN(SANKind.DNS, "api.svc.example.com"))
    assert common_name(template) == "web-1"
    with pytest.raises(Forbidden, match=r"www\.example\.org"):
        sign(prov, google.token(), csr_for(None, ("www.example.org",)))


def test_names_outside_the_policy_are_refused(keys: StaticRemoteKeys, google: Google) -> None:
    prov = make(keys)
    with pytest.raises(Forbidden, match=r"may not have: api\.svc\.example\.com"):
        sign(prov, google.token(), csr_for(None, ("api.svc.example.com",)))
    with pytest.raises(Forbidden, match="another-instance"):
        sign(prov, google.token(), csr_for(None, ("another-instance.c.prod-123456.internal",)))
    with pytest.raises(Forbidden, match="common name 'root'"):
        sign(prov, google.token(), csr_for("root"))


@pytest.mark.parametrize(
    ("facts", "match"),
    [
        ({"instance_name": "bad_name"}, "instance_name"),
        ({"instance_name": "a" * 64}, "instance_name"),
        ({"project_id": "example.com:legacy"}, "project_id"),
        ({"zone": "zone.evil"}, "zone"),
        ({"instance_id": "12ab"}, "instance_id"),
        ({"instance_id": "12\n"}, "instance_id"),
        ({"instance_name": "web-1\n"}, "instance_name"),
    ],
)
def test_instance_facts_that_make_no_name_are_refused(
    keys: StaticRemoteKeys, google: Google, facts: dict[str, Any], match: str
) -> None:
    with pytest.raises(Forbidden, match=match):
        sign(
            make(keys, projects=["prod-123456", "example.com:legacy"]), google.token(instance=facts)
        )


@pytest.mark.parametrize("missing", ["instance_name", "instance_id", "zone", "project_id"])
def test_a_token_missing_an_instance_fact_is_refused(
    keys: StaticRemoteKeys, google: Google, missing: str
) -> None:
    with pytest.raises(Unauthorized, match=f"no {missing}"):
        sign(make(keys), google.token(drop_instance=(missing,)))


# --- refusals: the token (401) -----------------------------------------------------------------


def test_a_forged_token_is_refused(keys: StaticRemoteKeys, google: Google) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthorized, match="signature does not verify"):
        sign(make(keys), google.token(key=forger))
    with pytest.raises(Unauthorized, match="not among the signing keys"):
        sign(make(keys), google.token(key=forger, kid="g-9"))


def test_only_rs256_is_accepted(keys: StaticRemoteKeys, google: Google) -> None:
    with pytest.raises(
        Unauthorized, match=r"'RS384' is not one provisioner 'gce' accepts \(RS256\)"
    ):
        sign(make(keys), google.token(alg="RS384"))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys.keys["ec-1"] = ec_key.public_key()
    with pytest.raises(
        Unauthorized, match=r"'ES256' is not one provisioner 'gce' accepts \(RS256\)"
    ):
        sign(make(keys), google.token(key=ec_key, kid="ec-1"))


def test_the_issuer_must_be_google(keys: StaticRemoteKeys, google: Google) -> None:
    with pytest.raises(Unauthorized, match=r"issuer 'https://evil\.example\.com'"):
        sign(make(keys), google.token({"iss": "https://evil.example.com"}))
    with pytest.raises(Unauthorized, match="issuer"):
        sign(make(keys), google.token({"iss": "accounts.google.com"}))


@pytest.mark.parametrize(
    "aud",
    [
        "https://other-ca.example.com/1.0/sign#gce",
        SIGN_URL + "#gce#x",
        SIGN_URL + "/#gce",
    ],
)
def test_a_token_for_another_ca_is_refused(
    keys: StaticRemoteKeys, google: Google, aud: str
) -> None:
    with pytest.raises(Unauthorized, match=r"expected https://127\.0\.0\.1:8443/1\.0/sign#gce"):
        forced(make(keys), google.token({"aud": aud}))


def test_a_token_for_another_provisioner_is_refused(keys: StaticRemoteKeys, google: Google) -> None:
    token = google.token({"aud": SIGN_URL + "#other"})
    reading = GCPProvisioner.read_credential(token)
    assert reading is not None and reading.provisioner == "other"
    with pytest.raises(Unauthorized, match="audience"):
        forced(make(keys), token)
    for aud in (SIGN_URL, ["x", AUDIENCE]):
        with pytest.raises(Unauthorized, match="audience"):
            forced(make(keys), google.token({"aud": aud}))


def test_expired_and_future_tokens_are_refused(keys: StaticRemoteKeys, google: Google) -> None:
    prov = make(keys)
    with pytest.raises(Unauthorized, match="expired"):
        sign(prov, google.token(), now=NOW + timedelta(hours=1, minutes=1))
    future = int((NOW + timedelta(minutes=5)).timestamp())
    with pytest.raises(Unauthorized, match="issued in the future"):
        sign(prov, google.token({"iat": future, "exp": future + 3600}))
    with pytest.raises(Unauthorized, match="no iat"):
        sign(prov, google.token(drop=("iat",)))
    with pytest.raises(Unauthorized, match="no exp"):
        sign(prov, google.token(drop=("exp",)))


def test_a_token_living_longer_than_googles_hour_is_refused(
    keys: StaticRemoteKeys, google: Google
) -> None:
    start = int(NOW.timestamp()) - 10
    with pytest.raises(Unauthorized, match="lifetime"):
        sign(make(keys), google.token({"iat": start, "exp": start + 7200}))


def test_a_token_without_the_instance_claim_is_refused(
    keys: StaticRemoteKeys, google: Google
) -> None:
    body = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "sub": "1",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 3600,
    }
    token = sign_compact(body, google.key, headers={"kid": "g-1"})
    assert GCPProvisioner.read_credential(token) is None
    with pytest.raises(Unauthorized, match="format=full"):
        forced(make(keys), token)


def test_the_service_account_email_must_be_verified(keys: StaticRemoteKeys, google: Google) -> None:
    prov = make(keys, service_accounts=[ACCOUNT.upper()])
    sign(prov, google.token())
    with pytest.raises(Unauthorized, match="email_verified"):
        sign(prov, google.token({"email_verified": False}))
    # Without service_accounts, the email is evidence only.
    sign(make(keys), google.token({"email_verified": False}))


def test_googles_keys_unreachable_is_a_503(keys: StaticRemoteKeys, google: Google) -> None:
    keys.down = True
    with pytest.raises(ServiceUnavailable):
        sign(make(keys), google.token())
    with pytest.raises(ServiceUnavailable):
        sign(make(None), google.token())


# --- refusals: the instance (403) --------------------------------------------------------------


def test_other_projects_are_refused(keys: StaticRemoteKeys, google: Google) -> None:
    with pytest.raises(Forbidden, match="project 'other-project'"):
        sign(make(keys), google.token(instance={"project_id": "other-project"}))


def test_zones_admit_only_their_instances(keys: StaticRemoteKeys, google: Google) -> None:
    prov = make(keys, zones=["europe-west1-b", "europe-west1-c"])
    sign(prov, google.token())
    with pytest.raises(Forbidden, match="zone 'us-central1-a'"):
        sign(prov, google.token(instance={"zone": "us-central1-a"}))


def test_service_accounts_admit_only_their_instances(
    keys: StaticRemoteKeys, google: Google
) -> None:
    prov = make(keys, service_accounts=[ACCOUNT])
    with pytest.raises(Forbidden, match="service account 'other@"):
        sign(prov, google.token({"email": "other@prod-123456.iam.gserviceaccount.com"}))
    with pytest.raises(Forbidden, match="no service account email"):
        sign(prov, google.token(drop=("email",)))


def test_old_instances_are_refused(keys: StaticRemoteKeys, google: Google) -> None:
    prov = make(keys, max_instance_age="1h")
    sign(prov, google.token())
    old = int((NOW - timedelta(hours=2)).timestamp())
    with pytest.raises(Forbidden, match="longer ago"):
        sign(prov, google.token(instance={"instance_creation_timestamp": old}))
    with pytest.raises(Forbidden, match="does not say when the instance was created"):
        sign(prov, google.token(drop_instance=("instance_creation_timestamp",)))
    with pytest.raises(Forbidden, match="does not say when the instance was created"):
        sign(prov, google.token(instance={"instance_creation_timestamp": "yesterday"}))
    # Without the limit, age does not matter.
    sign(make(keys), google.token(instance={"instance_creation_timestamp": old}))


# --- renewal, configuration, reading -----------------------------------------------------------


def test_renewal_is_on_unless_turned_off(keys: StaticRemoteKeys) -> None:
    make(keys).authorize_renew(None)  # type: ignore[arg-type]
    with pytest.raises(Forbidden, match="does not renew"):
        make(keys, allow_renewal=False).authorize_renew(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"projects": []}, "projects must list"),
        ({"projects": "prod-123456"}, "list of non-empty strings"),
        ({"zones": [""]}, "list of non-empty strings"),
        ({"jwks_url": "http://www.googleapis.com/oauth2/v3/certs"}, "not HTTPS"),
        ({"max_instance_age": "0s"}, "must be positive"),
        ({"max_instance_age": "soon"}, "max_instance_age"),
        ({"key_refresh_interval": "2h"}, "between 1s and 1h"),
        ({"durations": {"max": "31d"}}, "at most 30d"),
        ({"allowed_names": "*.example.com"}, "allowed_names"),
        ({"trust_on_first_use": "yes"}, "true or false"),
        ({"issuer": "nope"}, "issuer 'nope'"),
        ({"token_issuer": ""}, "token_issuer"),
        ({"colour": "blue"}, "unknown option"),
    ],
)
def test_bad_tables_are_refused(
    keys: StaticRemoteKeys, options: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        make(keys, **options)


def test_projects_are_required(keys: StaticRemoteKeys) -> None:
    env = ProvisionerEnvironment(data_dir=Path("x"), issuers=frozenset({"tls"}), remote_keys=keys)
    with pytest.raises(ConfigurationError, match="projects must list"):
        GCPProvisioner.from_config("gce", {"type": "GCP", "name": "gce"}, env)


def test_the_public_view_shows_no_allow_lists(keys: StaticRemoteKeys) -> None:
    view = make(keys, zones=["europe-west1-b"], service_accounts=[ACCOUNT]).public_view()
    assert set(view) == {"type", "name", "issuer", "cloud", "durations"}
    assert (view["type"], view["name"], view["issuer"], view["cloud"]) == (
        "GCP",
        "gce",
        "tls",
        "gcp",
    )
    assert view["durations"]["default"] == "1d"


def test_reading_skips_other_tokens(google: Google) -> None:
    assert GCPProvisioner.read_credential("not a token") is None
    key = ec.generate_private_key(ec.SECP256R1())
    now = int(NOW.timestamp())
    jwk_style = sign_compact({"iss": "admin", "aud": SIGN_URL, "sub": "x", "exp": now}, key)
    assert GCPProvisioner.read_credential(jwk_style) is None
    id_token = sign_compact(
        {"iss": "https://accounts.google.com", "aud": "client", "sub": "1"}, key
    )
    assert GCPProvisioner.read_credential(id_token) is None
    no_fragment = google.token({"aud": SIGN_URL})
    assert GCPProvisioner.read_credential(no_fragment) is None
    empty_fragment = google.token({"aud": SIGN_URL + "#"})
    assert GCPProvisioner.read_credential(empty_fragment) is None
    listed = google.token({"aud": [AUDIENCE]})
    assert GCPProvisioner.read_credential(listed) is None


def test_the_oidc_type_does_not_address_these_tokens_to_gcp(
    keys: StaticRemoteKeys, google: Google
) -> None:
    token = google.token()
    reading = OIDCProvisioner.read_credential(token)
    # The OIDC type reads it as addressed to Google and the service account's client ID,
    # which no OIDC provisioner answers to unless configured so; never to "gce".
    assert reading is not None and reading.provisioner != "gce"
    gcp_reading = GCPProvisioner.read_credential(token)
    assert gcp_reading is not None and gcp_reading.provisioner == "gce"
