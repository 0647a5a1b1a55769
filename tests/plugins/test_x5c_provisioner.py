"""X5C provisioner: configuration, the constructor accounts use, public view, token minting,
TPM-style keys, paths through intermediates, name patterns and the extra leaf check.

The forgeries are in test_x5c_security.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.csr import parse_csr
from engine.errors import ConfigurationError, Forbidden, Unauthorized
from engine.names import SAN
from engine.pipeline import SignRequest, issue_certificate
from engine.policy import DurationLimits
from engine.ports import CountingRandom, FrozenClock
from hosts.core.authority import Authority
from plugins.jwk import mint_token
from plugins.manager import PluginManager
from plugins.policy import NamePattern, NamePatterns
from plugins.provisioner import AuthorizeContext, ProvisionerEnvironment
from plugins.x5c import X5CNames, X5CProvisioner, X5CToken, mint_x5c_token, x5c_header
from tests.conftest import CA, new_csr, provisioner_of, sign_json

BASE = "https://ca.test"
AUDIENCE = f"{BASE}/1.0/sign"
USER = "alice.vpn.example.com"
ISSUERS = frozenset({"attestation", "agent", "account", "tls"})


# --- in-test CAs ----------------------------------------------------------------------------------


class Cert:
    """A certificate with its key and the chain above it (leaf first, root excluded)."""

    def __init__(
        self, key: Any, certificate: x509.Certificate, parents: tuple[x509.Certificate, ...]
    ) -> None:
        self.key = key
        self.certificate = certificate
        self.parents = parents

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.certificate, *self.parents]


def issue(
    parent: Cert | None,
    cn: str,
    now: datetime,
    *,
    ca: bool = False,
    lifetime: timedelta = timedelta(days=1),
    ekus: list[x509.ObjectIdentifier] | None = None,
    key: Any = None,
) -> Cert:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(parent.certificate.subject if parent else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ekus is None and not ca:
        ekus = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    cert = builder.sign(parent.key if parent else key, hashes.SHA256())
    parents = () if parent is None else (parent.certificate, *parent.parents)
    # A root is not sent in x5c; drop it from the chain a leaf carries.
    if parent is not None and parent.certificate.issuer == parent.certificate.subject:
        parents = parents[:-1]
    return Cert(key, cert, parents)


NOW = datetime.now(UTC).replace(microsecond=0)


def ctx(now: datetime = NOW, path: str = "/1.0/sign") -> AuthorizeContext:
    return AuthorizeContext(now=now, audiences=frozenset({f"{BASE}{path}"}))


def token_for(holder: Cert, *, now: datetime = NOW, name: str = "acct", **kw: Any) -> str:
    return mint_x5c_token(
        holder.key,
        holder.chain,
        provisioner=name,
        subject=kw.pop("subject", USER),
        sans=kw.pop("sans", [USER]),
        audience=kw.pop("audience", AUDIENCE),
        now=now,
        jti=kw.pop("jti", uuid.uuid4().hex),
        **kw,
    )


@pytest.fixture
def root() -> Cert:
    return issue(None, "Test Root", NOW, ca=True, lifetime=timedelta(days=365))


# --- the programmatic constructor -----------------------------------------------------------------


def test_constructor_builds_a_working_provisioner(root: Cert) -> None:
    provisioner = X5CProvisioner(
        name="acct",
        issuer="account",
        roots=[root.certificate],
        durations=DurationLimits(timedelta(minutes=5), timedelta(hours=24), timedelta(hours=24)),
        eku=["clientAuth", ExtendedKeyUsageOID.SERVER_AUTH],
    )
    leaf = issue(root, "device", NOW)
    authorization = provisioner.authorize_sign(token_for(leaf), parse_csr(new_csr(USER)[2]), ctx())
    policy = authorization.policy
    assert policy is not None
    assert policy.issuer == "account"
    assert policy.not_after_limit == leaf.certificate.not_valid_after_utc
    assert provisioner.describe_ekus() == ["clientAuth", "serverAuth"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"roots": []}, "at least one root"),
        ({"max_token_lifetime": timedelta(hours=2)}, "max_token_lifetime"),
        ({"max_token_lifetime": timedelta(0)}, "max_token_lifetime"),
        ({"eku": []}, "at least one EKU"),
        ({"eku": ["notAnEKU"]}, "unknown EKU"),
        ({"allowed_sans": "*.example.com"}, "list of strings"),
        ({"allowed_subjects": [""]}, "patterns"),
        ({"key_types": frozenset()}, "key_types"),
    ],
)
def test_constructor_refuses_bad_settings(root: Cert, options: dict[str, Any], match: str) -> None:
    settings: dict[str, Any] = {"name": "acct", "issuer": "account", "roots": [root.certificate]}
    settings.update(options)
    with pytest.raises(ConfigurationError, match=match):
        X5CProvisioner(**settings)


def test_a_leaf_certificate_is_not_accepted_as_a_root(root: Cert) -> None:
    leaf = issue(root, "device", NOW)
    with pytest.raises(ConfigurationError, match="not a CA"):
        X5CProvisioner(name="acct", issuer="account", roots=[leaf.certificate])


# --- paths through intermediates ------------------------------------------------------------------


def test_path_through_an_intermediate_is_accepted_and_clamped_to_the_earliest_expiry(
    root: Cert,
) -> None:
    intermediate = issue(root, "Short Intermediate", NOW, ca=True, lifetime=timedelta(hours=2))
    leaf = issue(intermediate, "device", NOW, lifetime=timedelta(hours=10))
    assert len(leaf.chain) == 2  # leaf and intermediate; the root stays out of x5c
    provisioner = X5CProvisioner(name="acct", issuer="account", roots=[root.certificate])
    authorization = provisioner.authorize_sign(token_for(leaf), parse_csr(new_csr(USER)[2]), ctx())
    assert authorization.policy is not None
    assert authorization.policy.not_after_limit == intermediate.certificate.not_valid_after_utc
    evidence = authorization.policy.evidence
    assert evidence["leaf_issuer"] == "CN=Short Intermediate"
    assert evidence["root_subject"] == "CN=Test Root"


def test_missing_intermediate_is_unauthorized(root: Cert) -> None:
    intermediate = issue(root, "Intermediate", NOW, ca=True)
    leaf = issue(intermediate, "device", NOW)
    provisioner = X5CProvisioner(name="acct", issuer="account", roots=[root.certificate])
    token = mint_x5c_token(
        leaf.key,
        [leaf.certificate],
        provisioner="acct",
        subject=USER,
        audience=AUDIENCE,
        now=NOW,
        jti="j",
    )
    with pytest.raises(Unauthorized, match="chain"):
        provisioner.authorize_sign(token, parse_csr(new_csr(USER)[2]), ctx())


def test_intermediate_restricted_to_server_auth_is_unauthorized(root: Cert) -> None:
    intermediate = issue(root, "TLS Servers", NOW, ca=True, ekus=[ExtendedKeyUsageOID.SERVER_AUTH])
    leaf = issue(intermediate, "device", NOW)
    provisioner = X5CProvisioner(name="acct", issuer="account", roots=[root.certificate])
    with pytest.raises(Unauthorized, match="intermediate"):
        provisioner.authorize_sign(token_for(leaf), parse_csr(new_csr(USER)[2]), ctx())


def test_expired_intermediate_is_unauthorized(root: Cert) -> None:
    intermediate = issue(root, "Old", NOW - timedelta(days=3), ca=True, lifetime=timedelta(days=1))
    leaf = issue(intermediate, "device", NOW)
    provisioner = X5CProvisioner(name="acct", issuer="account", roots=[root.certificate])
    with pytest.raises(Unauthorized, match="expired"):
        provisioner.authorize_sign(token_for(leaf), parse_csr(new_csr(USER)[2]), ctx())


def test_leaf_that_is_itself_a_configured_root_is_unauthorized(root: Cert) -> None:
    provisioner = X5CProvisioner(name="acct", issuer="account", roots=[root.certificate])
    as_leaf = Cert(root.key, root.certificate, ())
    with pytest.raises(Unauthorized):
        provisioner.authorize_sign(token_for(as_leaf), parse_csr(new_csr(USER)[2]), ctx())


# --- the extra leaf check (accounts bind names to the device) -------------------------------------


def test_leaf_check_sees_the_verified_leaf_and_can_refuse(root: Cert) -> None:
    seen: list[tuple[str, X5CNames]] = []

    def only_own_name(token: X5CToken, names: X5CNames) -> None:
        cn = str(token.leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        seen.append((cn, names))
        if names.subject != f"{cn}.vpn.example.com":
            raise Forbidden(f"device {cn} may not ask for {names.subject}")

    provisioner = X5CProvisioner(
        name="acct", issuer="account", roots=[root.certificate], leaf_check=only_own_name
    )
    alice = issue(root, "alice", NOW)
    provisioner.authorize_sign(token_for(alice), parse_csr(new_csr(USER)[2]), ctx())
    bob = issue(root, "bob", NOW)
    with pytest.raises(Forbidden, match="bob may not"):
        provisioner.authorize_sign(token_for(bob), parse_csr(new_csr(USER)[2]), ctx())
    assert [cn for cn, _ in seen] == ["alice", "bob"]
    assert seen[0][1] == X5CNames(subject=USER, sans=(SAN.parse(USER),))


# --- TPM-resident keys ----------------------------------------------------------------------------


class FakeTPMKey(ec.EllipticCurvePrivateKey):
    """Like agent.enroll.TPMSigningKey: only sign() (ECDSA P-256 SHA-256) and public_key()."""

    def __init__(self) -> None:
        self._inner = ec.generate_private_key(ec.SECP256R1())
        self.signatures = 0

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._inner.curve

    @property
    def key_size(self) -> int:
        return self._inner.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._inner.public_key()

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        assert isinstance(signature_algorithm, ec.ECDSA)
        assert isinstance(signature_algorithm.algorithm, hashes.SHA256)
        self.signatures += 1
        return self._inner.sign(data, signature_algorithm)

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise TypeError("no ECDH in the TPM")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise TypeError("the private key never leaves the TPM")

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        raise TypeError("the private key never leaves the TPM")

    def __copy__(self) -> FakeTPMKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> FakeTPMKey:
        return self


def test_token_signed_by_a_tpm_resident_key_is_accepted(root: Cert) -> None:
    key = FakeTPMKey()
    leaf = issue(root, "device", NOW, key=key)
    token = token_for(leaf)
    assert key.signatures == 1
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "ES256"
    provisioner = X5CProvisioner(name="acct", issuer="account", roots=[root.certificate])
    provisioner.authorize_sign(token, parse_csr(new_csr(USER)[2]), ctx())


# --- minting ------------------------------------------------------------------------------------


def test_mint_refuses_a_key_that_is_not_the_leafs(root: Cert) -> None:
    leaf = issue(root, "device", NOW)
    with pytest.raises(ValueError, match="not the key"):
        mint_x5c_token(
            ec.generate_private_key(ec.SECP256R1()),
            leaf.chain,
            provisioner="acct",
            subject=USER,
            audience=AUDIENCE,
            now=NOW,
            jti="j",
        )
    with pytest.raises(ValueError, match="at least the leaf"):
        mint_x5c_token(
            leaf.key, [], provisioner="acct", subject=USER, audience=AUDIENCE, now=NOW, jti="j"
        )


def test_x5c_header_is_standard_base64_der_leaf_first(root: Cert) -> None:
    intermediate = issue(root, "Intermediate", NOW, ca=True)
    leaf = issue(intermediate, "device", NOW)
    entries = x5c_header(leaf.chain)
    assert [base64.b64decode(e, validate=True) for e in entries] == [
        c.public_bytes(Encoding.DER) for c in leaf.chain
    ]


def test_csr_bound_token(root: Cert) -> None:
    leaf = issue(root, "device", NOW)
    provisioner = X5CProvisioner(
        name="acct", issuer="account", roots=[root.certificate], require_csr_binding=True
    )
    _, csr, csr_pem = new_csr(USER)
    with pytest.raises(Unauthorized, match="csr_sha256"):
        provisioner.authorize_sign(token_for(leaf), parse_csr(csr_pem), ctx())
    bound = token_for(leaf, csr_der=csr.public_bytes(Encoding.DER))
    authorization = provisioner.authorize_sign(bound, parse_csr(csr_pem), ctx())
    assert authorization.policy is not None
    other_pem = new_csr(USER)[2]
    other_auth = provisioner.authorize_sign(
        token_for(leaf, csr_der=csr.public_bytes(Encoding.DER)), parse_csr(other_pem), ctx()
    )
    assert other_auth.policy is not None
    with pytest.raises(Forbidden, match="binding"):
        for validator in other_auth.policy.validators:
            validator.validate(parse_csr(other_pem))


# --- name patterns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "fold", "expected"),
    [
        ("*.example.com", "a.example.com", True, True),
        ("*.example.com", "a.b.example.com", True, True),
        ("*.example.com", "example.com", True, False),
        ("*.example.com", ".example.com", True, False),
        ("*.example.com", "a.example.com.evil.test", True, False),
        ("*.Example.COM", "a.example.com", True, True),
        ("device-*", "device-42", False, True),
        ("device-*", "Device-42", False, False),
        ("device-*", "device-", False, False),
        ("*@example.com", "j.doe@example.com", True, True),
        ("10.0.0.0/8", "10.200.3.4", False, True),
        ("10.0.0.0/8", "11.0.0.1", False, False),
        ("fd00::/8", "fd12::1", False, True),
        ("10.0.0.0/8", "not-an-ip", False, False),
        ("spiffe://corp/*", "spiffe://corp/dev/1", False, True),
        ("exact", "exact", False, True),
        ("exact", "exactly", False, False),
        ("*", "", False, False),
    ],
)
def test_name_patterns(pattern: str, value: str, fold: bool, expected: bool) -> None:
    assert NamePattern.parse(pattern).matches(value, fold_case=fold) is expected


def test_pathological_pattern_is_fast() -> None:
    pattern = NamePattern.parse("*a" * 100)
    start = time.perf_counter()
    assert not pattern.matches("a" * 1000 + "b")
    assert time.perf_counter() - start < 2


def test_no_patterns_means_no_restriction() -> None:
    empty = NamePatterns.parse([], "x")
    assert empty.allows_subject("anything")
    assert empty.allows_san(SAN.parse("anything.example.com"))


# --- configuration in devid.toml ------------------------------------------------------------------


def env(tmp_path: Path) -> ProvisionerEnvironment:
    return ProvisionerEnvironment(data_dir=tmp_path, issuers=ISSUERS)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


def test_roots_from_files_and_inline_pem(tmp_path: Path, root: Cert) -> None:
    other = issue(None, "Other Root", NOW, ca=True)
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "one.pem").write_text(_pem(root.certificate))
    table = {
        "type": "X5C",
        "name": "acct",
        "roots": ["roots/one.pem"],
        "roots_pem": _pem(other.certificate),
        "allowed_sans": ["*.example.com"],
        "template": {"ekus": ["clientAuth", "1.3.6.1.5.5.7.3.17"]},
        "durations": {"min": "10m", "max": "48h", "default": "24h"},
        "max_token_lifetime": "10m",
    }
    provisioner = X5CProvisioner.from_config("acct", table, env(tmp_path))
    assert [r.subject.rfc4514_string() for r in provisioner.roots] == [
        "CN=Test Root",
        "CN=Other Root",
    ]
    assert provisioner.issuer == "tls"  # the default: only accounts issue from the Account CA
    assert provisioner.describe_ekus() == ["clientAuth", "1.3.6.1.5.5.7.3.17"]
    assert provisioner.max_token_lifetime == timedelta(minutes=10)
    assert provisioner.durations.minimum == timedelta(minutes=10)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"roots": []}, "must name a root"),
        ({"roots": "certs/agent_ca.crt"}, "list of PEM files"),
        ({"roots": ["missing.pem"]}, "cannot read"),
        ({"roots_pem": "not pem"}, "not PEM"),
        ({"max_token_lifetime": "2h"}, "max_token_lifetime"),
        ({"issuer": "nowhere"}, "issuer"),
        ({"template": {"ekus": ["bogus"]}}, "unknown EKU"),
        ({"template": {"ekus": ["clientAuth"], "extra": 1}}, "unknown option"),
        ({"allowed_subjects": "x"}, "list of strings"),
        ({"roots_file": "x"}, "unknown option"),
    ],
)
def test_bad_configuration_is_refused(
    tmp_path: Path, root: Cert, changes: dict[str, Any], match: str
) -> None:
    (tmp_path / "root.pem").write_text(_pem(root.certificate))
    table: dict[str, Any] = {"type": "X5C", "name": "acct", "roots": ["root.pem"]}
    table.update(changes)
    with pytest.raises(ConfigurationError, match=match):
        X5CProvisioner.from_config("acct", table, env(tmp_path))


def test_default_config_trusts_the_agent_ca(ca: CA) -> None:
    table = X5CProvisioner.default_config("accounts", env(ca.data_dir))
    tomllib.loads(tomli_w.dumps(table))  # it is valid TOML
    provisioner = X5CProvisioner.from_config("accounts", table, env(ca.data_dir))
    agent = x509.load_pem_x509_certificate((ca.data_dir / "certs/agent_ca.crt").read_bytes())
    assert provisioner.roots == (agent,)
    assert provisioner.issuer == "tls"
    assert provisioner.describe_ekus() == ["clientAuth"]


def test_the_plugin_is_registered_through_its_entry_point() -> None:
    manager = PluginManager()
    assert manager.provisioner_type("x5c") is X5CProvisioner
    info = {p.name: p for p in manager.plugins()}
    assert info["x5c"].provisioner_types == ("X5C",)


# --- the public view ------------------------------------------------------------------------------


@pytest.fixture
def authority(ca: CA) -> Iterator[Authority]:
    path = ca.data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    config["provisioners"].append(
        {"type": "X5C", "name": "accounts", "roots": ["certs/agent_ca.crt"]}
    )
    path.write_text(tomli_w.dumps(config))
    clock = FrozenClock(NOW)
    auth = Authority.load(ca.data_dir, ca.password, clock=clock, random=CountingRandom())
    auth.set_base_urls([BASE])
    yield auth
    auth.close()


def test_public_view_shows_roots_by_fingerprint_and_no_secrets(authority: Authority) -> None:
    provisioner = authority.provisioners["accounts"]
    assert isinstance(provisioner, X5CProvisioner)
    agent = authority.issuers["agent"].certificate
    views = [v for v in authority.ca.provisioners.view() if v["type"] == "X5C"]
    assert views == [provisioner.public_view()]
    view = views[0]
    assert view == {
        "type": "X5C",
        "name": "accounts",
        "issuer": "tls",
        "roots": [
            {
                "subject": agent.subject.rfc4514_string(),
                "sha256": hashlib.sha256(agent.public_bytes(Encoding.DER)).hexdigest(),
            }
        ],
        "maxTokenLifetime": 300,
        "durations": {"min": "5m", "max": "30d", "default": "1d"},
        "ekus": ["clientAuth"],
        "allowedSubjects": [],
        "allowedSANs": [],
        "requireCSRBinding": False,
    }
    text = json.dumps(view)
    assert "PRIVATE" not in text and "BEGIN" not in text and "secrets" not in text


# --- a provisioner made at run time, as accounts will -------------------------------------------


def test_provisioner_added_at_run_time_is_reached_by_its_iss(authority: Authority, ca: CA) -> None:
    runtime = X5CProvisioner(
        name="account:wifi",
        issuer="account",
        # The "device" below gets its certificate with a JWK token: from the TLS CA.
        roots=[authority.issuers["tls"].certificate],
        durations=DurationLimits(timedelta(minutes=5), timedelta(hours=24), timedelta(hours=24)),
        eku=["clientAuth"],
    )
    authority.provisioners[runtime.name] = runtime
    admin_key = provisioner_of(authority).load_private_key(ca.password)
    device_key, _, device_csr = new_csr("device-9.example.com")
    device_token = mint_token(
        admin_key,
        provisioner="admin",
        subject="device-9.example.com",
        audience=AUDIENCE,
        now=NOW,
        jti=uuid.uuid4().hex,
    )
    device_pem = sign_json(authority, {"csr": device_csr, "ott": device_token})["crt"]
    device_cert = x509.load_pem_x509_certificate(device_pem.encode())
    assert isinstance(device_key, ec.EllipticCurvePrivateKey)
    token = mint_x5c_token(
        device_key,
        [device_cert],
        provisioner="account:wifi",
        subject=USER,
        audience=AUDIENCE,
        now=NOW,
        jti=uuid.uuid4().hex,
    )
    response = sign_json(authority, {"csr": new_csr(USER)[2], "ott": token})
    cert = x509.load_pem_x509_certificate(response["crt"].encode())
    assert cert.issuer == authority.issuers["account"].certificate.subject
    assert cert.not_valid_after_utc <= device_cert.not_valid_after_utc
    record = authority.stores.certificates.get_certificate(format(cert.serial_number, "x"))
    assert record is not None and record.provisioner_name == "account:wifi"


def test_pipeline_writes_the_templates_ekus(authority: Authority, root: Cert) -> None:
    provisioner = X5CProvisioner(
        name="acct", issuer="account", roots=[root.certificate], eku=["serverAuth", "clientAuth"]
    )
    leaf = issue(root, "device", NOW)
    csr = parse_csr(new_csr(USER)[2])
    authorization = provisioner.authorize_sign(token_for(leaf), csr, ctx())
    assert authorization.policy is not None
    issued = issue_certificate(
        SignRequest(csr=csr),
        authorization.policy,
        authority.issuers["account"],
        authority.clock,
        authority.random,
    )
    ekus = issued.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(ekus) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert issued.certificate.not_valid_after_utc == leaf.certificate.not_valid_after_utc


# --- weak signatures on the path ----------------------------------------------------------------

SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")


def _resign_with_sha1(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The same certificate signed with sha1WithRSAEncryption (cryptography will not make one).

    The two algorithm OIDs have the same length, and so do the signatures, so every DER
    length stays as it was.
    """
    der = cert.public_bytes(Encoding.DER)
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(SHA256_WITH_RSA) == 1
    weak_tbs = tbs.replace(SHA256_WITH_RSA, SHA1_WITH_RSA)
    signature = issuer_key.sign(weak_tbs, padding.PKCS1v15(), hashes.SHA1())
    assert len(signature) == len(cert.signature)
    out = der.replace(tbs, weak_tbs).replace(SHA256_WITH_RSA, SHA1_WITH_RSA)
    return x509.load_der_x509_certificate(out.replace(cert.signature, signature))


def test_leaf_signed_with_sha1_is_unauthorized() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_root = issue(None, "RSA Root", NOW, ca=True, key=rsa_key)
    leaf = issue(rsa_root, "device", NOW)
    weak = Cert(leaf.key, _resign_with_sha1(leaf.certificate, rsa_key), ())
    assert isinstance(weak.certificate.signature_hash_algorithm, hashes.SHA1)
    provisioner = X5CProvisioner(name="acct", issuer="account", roots=[rsa_root.certificate])
    provisioner.authorize_sign(token_for(leaf), parse_csr(new_csr(USER)[2]), ctx())
    with pytest.raises(Unauthorized, match="chain"):
        provisioner.authorize_sign(token_for(weak), parse_csr(new_csr(USER)[2]), ctx())
