"""The public plugin API: what a third-party plugin may rely on, in the real pipeline.

Each test plays a plugin author: it imports only ``plugins.api``, registers a plugin
for one test, and checks what the CA does with it — credentials of its own format,
HMAC tokens only for the type that reads them, the read-only lookup, loading errors
that name the mistake, and audit sinks that cannot silence each other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import tomli_w
from cryptography import x509

import plugins.api as api
from engine.inventory import Device, DeviceStatus, ek_urn_from_digest
from hosts.core.authority import Authority, provisioner_environment
from plugins.api import (
    Authorization,
    AuthorizeContext,
    CommonNameIs,
    ConfigurationError,
    Credential,
    CSRInfo,
    Forbidden,
    Lookup,
    Options,
    Provisioner,
    ProvisionerEnvironment,
    ProvisionerRef,
    SignPolicy,
    TokenUse,
    Unauthorized,
    hookimpl,
)
from plugins.manager import PluginManager
from tests.conftest import CA, TokenFactory, new_csr, sign_json
from tests.imports import absolute_imports

REPO = Path(__file__).resolve().parents[2]


def _write_config(ca: CA, change: Callable[[dict[str, Any]], None]) -> None:
    path = ca.data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    change(config)
    path.write_text(tomli_w.dumps(config))


def _providing(*classes: type[Provisioner]) -> object:
    class Plugin:
        @hookimpl
        def devid_provisioner_types(self) -> Sequence[type[Provisioner]]:
            return list(classes)

    return Plugin()


@pytest.fixture
def manager() -> Iterator[PluginManager]:
    """The installed plugins plus whatever a test registers on this manager alone."""
    yield PluginManager()


# --- the module itself ----------------------------------------------------------------------


def test_every_public_name_is_importable_and_documented() -> None:
    docs = (REPO / "docs" / "plugins.md").read_text()
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []
    undocumented = [name for name in api.__all__ if f"`{name}`" not in docs]
    assert undocumented == [], "document these plugins.api names in docs/plugins.md"


def test_the_packages_a_plugin_type_checks_against_are_marked_typed() -> None:
    for package in ("plugins", "engine", "hosts"):
        assert (REPO / package / "py.typed").is_file()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]
    assert data["plugins"] == ["py.typed"]


def _plugin_layer_imports(path: Path) -> list[str]:
    """The devid plugin-layer modules *path* imports (engine and its own package aside)."""
    return [m for m in absolute_imports(path) if m == "plugins" or m.startswith("plugins.")]


BUILT_IN_PROVISIONERS = ("jwk", "x5c", "acme", "accounts")


def test_no_host_code_imports_a_built_in_plugin() -> None:
    """Hosts reach provisioners through the public API and the manager, never by class."""
    built_in = {f"plugins.{p}" for p in (*BUILT_IN_PROVISIONERS, "attestation")}
    offences = []
    for path in sorted((REPO / "hosts").rglob("*.py")):
        for module in _plugin_layer_imports(path):
            if any(module == b or module.startswith(f"{b}.") for b in built_in):
                offences.append(f"{path.relative_to(REPO)} imports {module}")
    assert offences == []


def test_built_in_provisioners_use_only_the_public_api() -> None:
    offences = []
    for package in BUILT_IN_PROVISIONERS:
        for path in sorted((REPO / "plugins" / package).rglob("*.py")):
            for module in _plugin_layer_imports(path):
                own = module == f"plugins.{package}" or module.startswith(f"plugins.{package}.")
                built_in = module in {f"plugins.{p}" for p in BUILT_IN_PROVISIONERS}
                if not (module == "plugins.api" or own or built_in):
                    offences.append(f"{path.relative_to(REPO)} imports {module}")
    assert offences == []


# --- credentials: each type reads its own ------------------------------------------------------


def _policy(provisioner: Provisioner, subject: str) -> SignPolicy:
    return SignPolicy(
        provisioner=ProvisionerRef(provisioner.type_name, provisioner.name),
        issuer=provisioner.issuer,
        validators=(CommonNameIs(subject),),
    )


class PassphraseProvisioner(Provisioner):
    """A credential that is no JOSE token at all: ``passphrase:NAME:SUBJECT:SECRET``."""

    type_name: ClassVar[str] = "PASSPHRASE"

    def __init__(self, name: str, issuer: str, secret: str) -> None:
        self.name = name
        self.issuer = issuer
        self.secret = secret

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> PassphraseProvisioner:
        opts = Options(f"provisioner {name!r}", options)
        provisioner = cls(name, opts.string("issuer", "tls"), opts.string("secret"))
        opts.finish()
        return provisioner

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        parts = text.split(":")
        if len(parts) != 4 or parts[0] != "passphrase":
            return None
        return Credential(text=text, provisioner=parts[1], reading=(parts[2], parts[3]))

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        subject, secret = credential.reading
        if not hmac.compare_digest(secret, self.secret):
            raise Unauthorized("wrong passphrase")
        return Authorization(policy=_policy(self, subject))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_token(claims: dict[str, Any], secret: bytes) -> str:
    header = _b64(json.dumps({"alg": "HS256"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


class SharedSecretProvisioner(Provisioner):
    """HS256 tokens with a shared secret: legitimate for this type, never for JWK."""

    type_name: ClassVar[str] = "SHAREDSECRET"

    def __init__(self, name: str, secret: bytes) -> None:
        self.name = name
        self.issuer = "tls"
        self.secret = secret

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> SharedSecretProvisioner:
        opts = Options(f"provisioner {name!r}", options)
        provisioner = cls(name, opts.string("secret").encode())
        opts.finish()
        return provisioner

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        parts = text.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(base64.urlsafe_b64decode(parts[0] + "=="))
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
            return None
        return Credential(text=text, provisioner=claims["iss"], reading=(parts, claims))

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        parts, claims = credential.reading
        mac = hmac.new(self.secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_b64(mac), parts[2]):
            raise Unauthorized("bad HMAC")
        return Authorization(
            policy=_policy(self, str(claims["sub"])),
            token=TokenUse(self.name, str(claims["jti"]), ctx.now),
        )


def _load_with(ca: CA, manager: PluginManager, *tables: dict[str, Any]) -> Authority:
    _write_config(ca, lambda c: c["provisioners"].extend(tables))
    return Authority.load(ca.data_dir, ca.password, plugins=manager)


def test_a_provisioner_may_accept_a_credential_that_is_not_a_jose_token(
    ca: CA, manager: PluginManager
) -> None:
    manager.register(_providing(PassphraseProvisioner), name="passphrase")
    table = {"type": "PASSPHRASE", "name": "door", "secret": "open sesame"}
    authority = _load_with(ca, manager, table)
    try:
        response = sign_json(
            authority,
            {"csr": new_csr("door.example")[2], "ott": "passphrase:door:door.example:open sesame"},
        )
        cert = x509.load_pem_x509_certificate(response["crt"].encode())
        assert ProvisionerRef.from_certificate(cert) == ProvisionerRef("PASSPHRASE", "door")
        with pytest.raises(Unauthorized, match="wrong passphrase"):
            sign_json(
                authority,
                {"csr": new_csr("door.example")[2], "ott": "passphrase:door:door.example:guess"},
            )
    finally:
        authority.close()


def test_an_hmac_token_reaches_its_own_type_and_never_the_jwk_provisioner(
    ca: CA, manager: PluginManager
) -> None:
    manager.register(_providing(SharedSecretProvisioner), name="shared-secret")
    authority = _load_with(ca, manager, {"type": "SHAREDSECRET", "name": "lab", "secret": "s3"})
    try:
        claims = {"iss": "lab", "sub": "lab.example", "jti": "one"}
        response = sign_json(
            authority, {"csr": new_csr("lab.example")[2], "ott": hs256_token(claims, b"s3")}
        )
        assert "crt" in response
        # The same kind of token naming the JWK provisioner is refused: JWK reads no HMAC,
        # and the shared-secret type's reading names a provisioner of another type.
        forged = hs256_token({"iss": "admin", "sub": "x.example", "jti": "two"}, b"s3")
        with pytest.raises(Unauthorized, match="HS256"):
            sign_json(authority, {"csr": new_csr("x.example")[2], "ott": forged})
        with pytest.raises(Unauthorized, match="already been used"):
            sign_json(
                authority, {"csr": new_csr("lab.example")[2], "ott": hs256_token(claims, b"s3")}
            )
    finally:
        authority.close()


def test_a_credential_no_type_reads_is_refused_with_the_first_readers_error(
    authority: Authority,
) -> None:
    with pytest.raises(Exception, match="compact JWS") as raised:
        sign_json(authority, {"csr": new_csr()[2], "ott": "not-a-token"})
    assert getattr(raised.value, "status", None) in (400, 401)


# --- safe defaults ----------------------------------------------------------------------------


class Minimal(Provisioner):
    """Overrides nothing but building: everything else must refuse."""

    type_name: ClassVar[str] = "MINIMAL"

    def __init__(self, name: str) -> None:
        self.name = name
        self.issuer = "tls"

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> Minimal:
        Options(f"provisioner {name!r}", options).finish()
        return cls(name)


def test_the_base_class_refuses_everything_a_type_does_not_override(
    authority: Authority, token: TokenFactory
) -> None:
    p = Minimal("m")
    ctx = authority.context("/1.0/sign")
    credential = Credential(text="x", provisioner="m")
    assert Minimal.read_credential("anything") is None
    with pytest.raises(Unauthorized):
        p.authorize_sign(credential, new_csr_info(), ctx)
    with pytest.raises(Unauthorized):
        p.authorize_revoke(credential, 1, ctx)
    assert p.acme() is None
    assert p.token_minter(b"pw") is None
    assert p.public_view() == {"type": "MINIMAL", "name": "m", "issuer": "tls"}
    with pytest.raises(ConfigurationError, match="no default configuration"):
        Minimal.default_config("m", provisioner_environment(authority.config))


def new_csr_info() -> CSRInfo:
    from engine.csr import parse_csr

    return parse_csr(new_csr()[2])


class NoPolicy(Minimal):
    type_name: ClassVar[str] = "NOPOLICY"

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        return Credential(text=text, provisioner="np")

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        return Authorization(policy=None)


def test_an_authorization_without_a_sign_policy_is_refused_not_a_crash(
    ca: CA, manager: PluginManager
) -> None:
    manager.register(_providing(NoPolicy), name="nopolicy")
    authority = _load_with(ca, manager, {"type": "NOPOLICY", "name": "np"})
    try:
        with pytest.raises(Forbidden, match="authorized no certificate"):
            sign_json(authority, {"csr": new_csr()[2], "ott": "anything"})
        assert authority.stores.certificates.count_certificates() == 0
    finally:
        authority.close()


# --- loading: mistakes are named at start-up --------------------------------------------------


def test_a_misspelt_hook_stops_loading_with_its_name(manager: PluginManager) -> None:
    class Typo:
        @hookimpl
        def devid_provisoner_types(self) -> Sequence[type[Provisioner]]:
            return []

    with pytest.raises(ConfigurationError, match="devid_provisoner_types"):
        manager.register(Typo(), name="typo")
    assert not manager.is_registered("typo")


def test_an_unmarked_misspelt_hook_is_named_too(manager: PluginManager) -> None:
    class Typo:
        def devid_audti(self, event: str, fields: Mapping[str, Any]) -> None: ...

    with pytest.raises(ConfigurationError, match="devid_audti"):
        manager.register(Typo(), name="typo")


def test_a_type_that_is_no_provisioner_subclass_is_refused(manager: PluginManager) -> None:
    class Loose:
        type_name = "LOOSE"

    class Plugin:
        @hookimpl
        def devid_provisioner_types(self) -> Sequence[Any]:
            return [Loose]

    manager.register(Plugin(), name="loose")
    with pytest.raises(ConfigurationError, match=r"must subclass plugins\.api\.Provisioner"):
        manager.provisioner_types()


def test_host_built_types_cannot_be_configured(ca: CA) -> None:
    _write_config(
        ca,
        lambda c: c["provisioners"].append({"type": "ACCOUNT", "name": "sneaky", "account": "x"}),
    )
    with pytest.raises(ConfigurationError, match=r"cannot be configured in devid\.toml"):
        Authority.load(ca.data_dir, ca.password)


# --- the read-only lookup ---------------------------------------------------------------------


class RegisteredOnly(Provisioner):
    """Signs for a device only while the inventory holds it active (``sub`` is its EK)."""

    type_name: ClassVar[str] = "REGISTEREDONLY"

    def __init__(self, name: str, lookup: Lookup) -> None:
        self.name = name
        self.issuer = "tls"
        self.lookup = lookup

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> RegisteredOnly:
        Options(f"provisioner {name!r}", options).finish()
        if env.lookup is None:
            raise ConfigurationError("needs the lookup")
        return cls(name, env.lookup)

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        name, _, ek = text.partition("|")
        return Credential(text=text, provisioner=name, reading=ek) if ek else None

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        device = self.lookup.device(credential.reading)
        if device is None or not device.active:
            raise Forbidden("the device is not registered and active")
        assert self.lookup.account("no-such-account") is None
        assert self.lookup.certificate("ffff") is None
        return Authorization(policy=_policy(self, "svc.example.com"))


def test_a_provisioner_reads_the_inventory_through_the_lookup(
    ca: CA, manager: PluginManager
) -> None:
    manager.register(_providing(RegisteredOnly), name="registered-only")
    authority = _load_with(ca, manager, {"type": "REGISTEREDONLY", "name": "reg"})
    ek = ek_urn_from_digest(hashlib.sha256(b"a made-up EK").digest())
    try:
        with pytest.raises(Forbidden, match="not registered"):
            sign_json(authority, {"csr": new_csr()[2], "ott": f"reg|{ek}"})
        authority.stores.devices.put_device(Device(ek_urn=ek, status=DeviceStatus.ACTIVE))
        issued = sign_json(authority, {"csr": new_csr()[2], "ott": f"reg|{ek}"})
        serial = x509.load_pem_x509_certificate(issued["crt"].encode()).serial_number
        record = authority.lookup.certificate(format(serial, "x"))
        assert record is not None and record.provisioner_name == "reg"
        assert not hasattr(authority.lookup, "put_device")  # read-only
    finally:
        authority.close()


# --- audit sinks cannot silence each other -----------------------------------------------------


def test_every_audit_sink_runs_even_when_one_raises(
    authority: Authority, token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    class Broken:
        @hookimpl
        def devid_audit(self, event: str, fields: Mapping[str, Any]) -> None:
            raise RuntimeError("sink down")

    class Recorder:
        @hookimpl
        def devid_audit(self, event: str) -> None:  # a subset of the arguments is fine
            seen.append(event)

    # Registered on both sides of the broken one: pluggy calls in reverse order.
    authority.plugins.register(Recorder(), name="first")
    authority.plugins.register(Broken(), name="broken")
    authority.plugins.register(Recorder(), name="last")
    try:
        sign_json(authority, {"csr": new_csr()[2], "ott": token()})
    finally:
        for name in ("first", "broken", "last"):
            authority.plugins.unregister(name)
    assert seen == ["certificate.issued", "certificate.issued"]
    assert "audit hook of plugin 'broken' failed" in caplog.text
