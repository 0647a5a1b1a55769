"""The plugin manager: built-ins load like third-party plugins, can be disabled, and
third-party provisioner types, sign vetoes and audit sinks plug into the real pipeline."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from engine.jose import sign_compact
from hosts.core.authority import Authority
from plugins.api import (
    Authorization,
    AuthorizeContext,
    CommonNameIs,
    ConfigurationError,
    Credential,
    CSRInfo,
    Forbidden,
    Options,
    Provisioner,
    ProvisionerEnvironment,
    ProvisionerRef,
    SignPolicy,
    Unauthorized,
    hookimpl,
    jose_token,
    read_jose_credential,
)
from plugins.jwk import JWKProvisioner
from plugins.manager import PluginManager
from tests.conftest import CA, TokenFactory, new_csr, sign_json

# --- a tiny third-party provisioner type ------------------------------------------------------


class AllowListProvisioner(Provisioner):
    """Test double: accepts a token whose ``sub`` is in its allow-list (signature unchecked)."""

    type_name: ClassVar[str] = "ALLOWLIST"

    def __init__(self, name: str, issuer: str, subjects: frozenset[str]) -> None:
        self.name = name
        self.issuer = issuer
        self.subjects = subjects

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> AllowListProvisioner:
        opts = Options(f"provisioner {name!r}", options)
        provisioner = cls(
            name=name,
            issuer=opts.string("issuer", "tls"),
            subjects=frozenset(opts.require("subjects")),
        )
        opts.finish()
        return provisioner

    @classmethod
    def default_config(cls, name: str, env: ProvisionerEnvironment) -> dict[str, Any]:
        return {"type": cls.type_name, "name": name, "subjects": []}

    def public_view(self) -> dict[str, Any]:
        return {"type": self.type_name, "name": self.name}

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        return read_jose_credential(text)

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        subject = jose_token(credential).claims().get("sub")
        if subject not in self.subjects:
            raise Unauthorized(f"{subject!r} is not on the allow-list")
        policy = SignPolicy(
            provisioner=ProvisionerRef(self.type_name, self.name),
            issuer=self.issuer,
            validators=(CommonNameIs(str(subject)),),
        )
        return Authorization(policy=policy)


class AllowListPlugin:
    @hookimpl
    def devid_provisioner_types(self) -> Sequence[type[Provisioner]]:
        return [AllowListProvisioner]


def _plugin_providing(cls: type[Any]) -> object:
    class Plugin:
        @hookimpl
        def devid_provisioner_types(self) -> Sequence[type[Provisioner]]:
            return [cls]

    return Plugin()


def _write_config(ca: CA, change: Callable[[dict[str, Any]], None]) -> None:
    path = ca.data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    change(config)
    path.write_text(tomli_w.dumps(config))


def _allowlist_token(subject: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return sign_compact({"iss": "lab", "sub": subject}, key)


@pytest.fixture
def allowlist_plugins() -> Iterator[PluginManager]:
    """A manager with the allow-list plugin registered for one test only."""
    manager = PluginManager()
    manager.register(AllowListPlugin(), name="allowlist")
    yield manager
    manager.unregister("allowlist")
    assert "ALLOWLIST" not in manager.provisioner_types()


# --- loading ---------------------------------------------------------------------------------


def test_builtin_jwk_plugin_is_loaded_through_the_devid_entry_point_group() -> None:
    info = {p.name: p for p in PluginManager().plugins()}
    jwk = info["jwk"]
    assert jwk.module == "plugins.jwk"
    assert jwk.distribution is not None
    assert jwk.distribution.startswith("devid ")
    assert jwk.provisioner_types == ("JWK",)


def test_builtin_provisioner_type_is_found_case_insensitively() -> None:
    manager = PluginManager()
    assert manager.provisioner_type("JWK") is JWKProvisioner
    assert manager.provisioner_type("jwk") is JWKProvisioner


def test_manager_without_entry_points_has_no_provisioner_types() -> None:
    assert PluginManager(load_entry_points=False).provisioner_types() == {}


def test_disabled_plugin_is_not_loaded() -> None:
    manager = PluginManager(disabled=["jwk"])
    assert "jwk" not in {p.name for p in manager.plugins()}


def test_type_of_a_disabled_plugin_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"provisioner type 'JWK'.*not disabled"):
        PluginManager(disabled=["jwk"]).provisioner_type("JWK")


def test_registering_a_disabled_plugin_by_name_does_nothing() -> None:
    manager = PluginManager(disabled=["allowlist"])
    manager.register(AllowListPlugin(), name="allowlist")
    assert "ALLOWLIST" not in manager.provisioner_types()


def test_plugins_disabled_in_devid_toml_are_not_loaded(ca: CA) -> None:
    _write_config(ca, lambda c: c.setdefault("plugins", {}).update(disabled=["jwk"]))
    with pytest.raises(ConfigurationError, match="'JWK'"):
        Authority.load(ca.data_dir, ca.password)


def test_two_plugins_registering_one_type_name_is_a_configuration_error() -> None:
    class OtherAllowList(AllowListProvisioner):
        type_name: ClassVar[str] = "allowlist"

    manager = PluginManager(load_entry_points=False)
    manager.register(AllowListPlugin(), name="first")
    manager.register(_plugin_providing(OtherAllowList), name="second")
    with pytest.raises(ConfigurationError, match="two plugins"):
        manager.provisioner_types()


def test_third_party_plugin_cannot_shadow_a_builtin_type() -> None:
    class FakeJWK(AllowListProvisioner):
        type_name: ClassVar[str] = "JWK"

    manager = PluginManager()
    manager.register(_plugin_providing(FakeJWK), name="fake-jwk")
    with pytest.raises(ConfigurationError, match="'JWK'"):
        manager.provisioner_type("JWK")


def test_two_plugins_registering_one_attestation_format_is_a_configuration_error() -> None:
    class Format:
        format_name = "tpm"

    class Plugin:
        @hookimpl
        def devid_attestation_formats(self) -> Sequence[Any]:
            return [Format()]

    manager = PluginManager(load_entry_points=False)
    manager.register(Plugin(), name="a")
    manager.register(Plugin(), name="b")
    with pytest.raises(ConfigurationError, match="'tpm'"):
        manager.attestation_formats()


# --- a third-party provisioner type in the real pipeline ----------------------------------------


def _add_allowlist_provisioner(config: dict[str, Any], **extra: Any) -> None:
    config["provisioners"].append(
        {"type": "ALLOWLIST", "name": "lab", "subjects": ["lab.example.com"], **extra}
    )


def test_third_party_provisioner_type_is_built_from_devid_toml_and_issues(
    ca: CA, allowlist_plugins: PluginManager
) -> None:
    _write_config(ca, _add_allowlist_provisioner)
    authority = Authority.load(ca.data_dir, ca.password, plugins=allowlist_plugins)
    try:
        assert isinstance(authority.provisioners["lab"], AllowListProvisioner)
        response = sign_json(
            authority,
            {"csr": new_csr("lab.example.com")[2], "ott": _allowlist_token("lab.example.com")},
        )
        cert = x509.load_pem_x509_certificate(response["crt"].encode())
        assert ProvisionerRef.from_certificate(cert) == ProvisionerRef("ALLOWLIST", "lab")
        with pytest.raises(Unauthorized, match="allow-list"):
            sign_json(
                authority,
                {"csr": new_csr("x.example.com")[2], "ott": _allowlist_token("x.example.com")},
            )
        assert authority.stores.certificates.count_certificates() == 1
    finally:
        authority.close()


def test_provisioner_table_of_an_unregistered_type_is_a_configuration_error(ca: CA) -> None:
    _write_config(ca, _add_allowlist_provisioner)
    with pytest.raises(ConfigurationError, match="'ALLOWLIST'"):
        Authority.load(ca.data_dir, ca.password)


def test_unknown_option_in_a_third_party_provisioner_table_is_named(
    ca: CA, allowlist_plugins: PluginManager
) -> None:
    _write_config(ca, lambda c: _add_allowlist_provisioner(c, subjets=["typo"]))
    with pytest.raises(ConfigurationError, match="subjets"):
        Authority.load(ca.data_dir, ca.password, plugins=allowlist_plugins)


def _admin(config: dict[str, Any]) -> dict[str, Any]:
    admin: dict[str, Any] = next(p for p in config["provisioners"] if p["name"] == "admin")
    return admin


def test_unknown_option_in_a_jwk_provisioner_table_is_named(ca: CA) -> None:
    _write_config(ca, lambda c: _admin(c).update(max_token_lifetme="5m"))
    with pytest.raises(ConfigurationError, match="max_token_lifetme"):
        Authority.load(ca.data_dir, ca.password)


def test_unknown_option_in_a_durations_table_is_named(ca: CA) -> None:
    _write_config(ca, lambda c: _admin(c)["durations"].update(maximum="48h"))
    with pytest.raises(ConfigurationError, match="maximum"):
        Authority.load(ca.data_dir, ca.password)


# --- organisation-wide hooks ------------------------------------------------------------------


class Veto:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, ProvisionerRef]] = []

    @hookimpl
    def devid_check_sign(self, provisioner: Provisioner, csr: CSRInfo, policy: SignPolicy) -> None:
        self.calls.append((provisioner.name, csr.common_name, policy.provisioner))
        if csr.common_name == "forbidden.example.com":
            raise Forbidden("organisation policy forbids this name")


class AuditLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def devid_audit(self, event: str, fields: Mapping[str, Any]) -> None:
        self.events.append((event, dict(fields)))


class BrokenAudit:
    @hookimpl
    def devid_audit(self, event: str, fields: Mapping[str, Any]) -> None:
        raise RuntimeError("audit sink is down")


@pytest.fixture
def veto(authority: Authority) -> Iterator[Veto]:
    plugin = Veto()
    authority.plugins.register(plugin, name="veto")
    yield plugin
    authority.plugins.unregister("veto")


def test_check_sign_veto_stops_issuance_and_stores_nothing(
    authority: Authority, token: TokenFactory, veto: Veto
) -> None:
    name = "forbidden.example.com"
    with pytest.raises(Forbidden, match="organisation policy"):
        sign_json(authority, {"csr": new_csr(name)[2], "ott": token(name)})
    assert authority.stores.certificates.count_certificates() == 0


def test_check_sign_sees_the_provisioner_csr_and_policy_and_may_allow(
    authority: Authority, token: TokenFactory, veto: Veto
) -> None:
    sign_json(authority, {"csr": new_csr("ok.example.com")[2], "ott": token("ok.example.com")})
    assert veto.calls == [("admin", "ok.example.com", ProvisionerRef("JWK", "admin"))]
    assert authority.stores.certificates.count_certificates() == 1


def test_check_sign_is_not_consulted_for_requests_the_provisioner_refused(
    authority: Authority, token: TokenFactory, veto: Veto
) -> None:
    with pytest.raises(Unauthorized):
        sign_json(authority, {"csr": new_csr()[2], "ott": token(audience="https://elsewhere.test")})
    assert veto.calls == []


def test_audit_hook_receives_certificate_issued(authority: Authority, token: TokenFactory) -> None:
    audit = AuditLog()
    authority.plugins.register(audit, name="audit-log")
    try:
        response = sign_json(authority, {"csr": new_csr()[2], "ott": token()})
    finally:
        authority.plugins.unregister("audit-log")
    cert = x509.load_pem_x509_certificate(response["crt"].encode())
    assert [event for event, _ in audit.events] == ["certificate.issued"]
    fields = audit.events[0][1]
    assert fields["serial"] == format(cert.serial_number, "x")
    assert fields["provisioner"] == "admin"
    assert fields["sans"] == ["svc.example.com"]


def test_exception_in_an_audit_hook_does_not_break_issuance(
    authority: Authority, token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    authority.plugins.register(BrokenAudit(), name="broken-audit")
    try:
        response = sign_json(authority, {"csr": new_csr()[2], "ott": token()})
    finally:
        authority.plugins.unregister("broken-audit")
    assert "crt" in response
    assert authority.stores.certificates.count_certificates() == 1
    assert "audit hook of plugin 'broken-audit' failed" in caplog.text
