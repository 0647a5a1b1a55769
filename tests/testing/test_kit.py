"""The plugin test kit (hosts.testing): its pytest plugin, its CA facade, its helpers, and
check_provisioner, which must pass a sound provisioner type and name what a broken one gets
wrong.

The fixtures come from the kit's pytest plugin, which pytest loads here through devid's
own ``pytest11`` entry point, as it does in a plugin author's project.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

import plugins.jwk
from hosts.testing import (
    CredentialRequest,
    LocalCA,
    ServedCA,
    check_provisioner,
    csr_der,
    csr_pem,
    hs256_token,
    jwk_token,
    new_csr,
    new_key,
    tamper,
)
from hosts.testing.conformance import CHECKS, ConformanceError, ConformanceReport
from hosts.testing.servers import clean_env
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
    SANsAre,
    SetSubjectAndSANs,
    SignPolicy,
    TokenUse,
    Unauthorized,
    check_registered_claims,
    hookimpl,
    subject_and_sans,
)
from tests.conftest import REPO_ROOT
from tests.imports import absolute_imports

# --- the plugin and the package ----------------------------------------------------------------


def test_the_kit_is_a_pytest_plugin_installed_with_devid(pytestconfig: pytest.Config) -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("devid") == "hosts.testing.plugin"
    assert pytestconfig.pluginmanager.has_plugin("devid")


def test_a_plugin_authors_test_file_gets_the_fixtures_without_a_conftest(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(
        textwrap.dedent(
            """
            from hosts.testing import check_provisioner, csr_pem

            def test_sign(devid_ca):
                token = devid_ca.mint_token("svc.example.com")
                issued = devid_ca.sign(csr_pem("svc.example.com"), token)
                assert [c.serial for c in devid_ca.certificates()] == [issued.serial_hex]

            def test_conformance(devid_ca):
                def mint(request):
                    return devid_ca.mint_token(
                        request.subject, request.sans, audience=request.audience,
                        now=request.now, lifetime=request.lifetime, jti=request.jti,
                    )
                table = devid_ca.provisioner_table("admin")
                check_provisioner(devid_ca, table, mint, names=["svc.example.com"])
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_importing_the_scaffolding_does_not_load_the_ca() -> None:
    code = (
        "import sys, hosts.testing.ports, hosts.testing.plugin;"
        "print(sorted(m for m in sys.modules if m.startswith(('hosts.core', 'hosts.service'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert result.stdout.strip() == "[]", result.stderr


KIT_MODULES = ("__init__.py", "ca.py", "served.py", "keys.py", "conformance.py", "plugin.py")


_imported_modules = absolute_imports


def test_only_the_facade_imports_devids_host_code() -> None:
    """Only hosts/testing/ca.py changes when the host internals move."""
    offences = []
    for name in KIT_MODULES:
        for module in _imported_modules(REPO_ROOT / "hosts" / "testing" / name):
            inside = module == "hosts" or module.startswith("hosts.")
            if inside and not module.startswith("hosts.testing") and name != "ca.py":
                offences.append(f"hosts/testing/{name} imports {module}")
    assert offences == []


def test_the_example_plugin_uses_only_the_public_api_and_the_kit() -> None:
    example = REPO_ROOT / "examples" / "hmac-provisioner"
    offences = []
    for path in sorted(example.rglob("*.py")):
        allowed = {"plugins.api"} | ({"hosts.testing"} if "tests" in path.parts else set())
        for module in _imported_modules(path):
            top = module.split(".")[0]
            if top in {"engine", "plugins", "hosts", "agent"} and module not in allowed:
                offences.append(f"{path.relative_to(REPO_ROOT)} imports {module}")
    assert offences == []


# --- the CA facade ------------------------------------------------------------------------------


def test_devid_ca_signs_lists_renews_and_revokes(devid_ca: LocalCA) -> None:
    assert devid_ca.certificate_count() == 0
    issued = devid_ca.sign(csr_pem("svc.example.com"), devid_ca.mint_token("svc.example.com"))
    assert issued.chain_pem[0] == issued.pem and len(issued.chain_pem) >= 2
    issued.certificate.verify_directly_issued_by(
        x509.load_pem_x509_certificate(issued.chain_pem[1].encode())
    )
    [record] = devid_ca.certificates()
    assert (record.serial, record.provisioner_name, record.status) == (
        issued.serial_hex,
        "admin",
        "active",
    )
    renewed = devid_ca.renew(issued.certificate)
    assert devid_ca.certificate_count() == 2
    revoke = devid_ca.mint_token(str(renewed.serial), path="/1.0/revoke")
    devid_ca.revoke(renewed.serial, revoke)
    devid_ca.revoke(issued.serial)  # as an operator
    assert {c.status for c in devid_ca.certificates()} == {"revoked"}


def test_devid_ca_requested_bounds_and_contexts(devid_ca: LocalCA) -> None:
    with pytest.raises(Forbidden, match="longer than the maximum"):
        devid_ca.sign(
            csr_pem("svc.example.com"),
            devid_ca.mint_token("svc.example.com"),
            not_after=timedelta(days=400),
        )
    ctx = devid_ca.context("/1.0/revoke")
    assert ctx.audiences == frozenset({"https://ca.test/1.0/revoke"})
    assert devid_ca.audience() == "https://ca.test/1.0/sign"


def test_a_table_the_ca_refuses_leaves_devid_toml_as_it_was(devid_ca: LocalCA) -> None:
    before = devid_ca.config_path.read_text()
    with pytest.raises(ConfigurationError, match="no loaded plugin provides"):
        devid_ca.add_provisioner({"type": "NOSUCHTYPE", "name": "x"})
    assert devid_ca.config_path.read_text() == before
    devid_ca.sign(csr_pem("svc.example.com"), devid_ca.mint_token("svc.example.com"))


def test_the_kit_fixtures_sit_beside_the_suites_own(devid_ca: LocalCA, ca: Any) -> None:
    assert devid_ca.data_dir != ca.data_dir


# --- registering plugins ------------------------------------------------------------------------


def test_an_installed_plugin_registered_by_a_test_is_loaded_once(devid_ca: LocalCA) -> None:
    devid_ca.register_plugin(plugins.jwk, "jwk")  # installed under that very name
    devid_ca.register_plugin(plugins.jwk, "my-jwk")  # and under another name
    assert "JWK" in devid_ca.provisioner_types()
    names = devid_ca.plugin_names()
    assert "my-jwk" in names and "jwk" not in names
    devid_ca.sign(csr_pem("svc.example.com"), devid_ca.mint_token("svc.example.com"))
    devid_ca.unregister_plugin("my-jwk")
    assert "jwk" in devid_ca.plugin_names()


def test_a_plugin_registered_by_a_test_takes_the_place_of_one_providing_its_type(
    devid_ca: LocalCA,
) -> None:
    first, second = providing(SharedKey), providing(SharedKey)
    devid_ca.register_plugin(first, "first")
    devid_ca.register_plugin(second, "second")
    assert devid_ca.provisioner_types()["SHAREDKEY"] is SharedKey
    assert "first" not in devid_ca.plugin_names()


def test_a_plugin_devid_refuses_leaves_the_ca_as_it_was(devid_ca: LocalCA) -> None:
    class Typo:
        @hookimpl
        def devid_provisoner_types(self) -> Sequence[type[Provisioner]]:
            return []

    with pytest.raises(ConfigurationError, match="devid_provisoner_types"):
        devid_ca.register_plugin(Typo(), "typo")
    assert "typo" not in devid_ca.plugin_names()


# --- helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["P-256", "P-384", "Ed25519", "RSA-2048"])
def test_csrs_for_every_key_type_and_kind_of_name(kind: str) -> None:
    key = new_key(kind)
    pem = csr_pem(["svc.example.com", "10.0.0.1", "ops@example.com"], key)
    csr = x509.load_pem_x509_csr(pem.encode())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=svc.example.com"
    assert csr_der(pem) == csr.public_bytes(Encoding.DER)
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert len(list(sans)) == 3


def test_tampering_changes_the_last_part_only() -> None:
    token = jwk_token(
        new_key(), provisioner="p", subject="s.example.com", audience="https://ca.test/1.0/sign"
    )
    changed = tamper(token)
    assert changed != token and changed.rsplit(".", 1)[0] == token.rsplit(".", 1)[0]
    assert tamper("opaque") != "opaque"


# --- a provisioner type to check, and broken ones -----------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SharedKey(Provisioner):
    """HS256 tokens under a secret from a file, for names under one domain: sound."""

    type_name: ClassVar[str] = "SHAREDKEY"
    # What the broken variants below turn off, one each.
    checks_audience: ClassVar[bool] = True
    marks_used: ClassVar[bool] = True
    remembers_until_expiry: ClassVar[bool] = True
    checks_names: ClassVar[bool] = True
    rejects_unknown_options: ClassVar[bool] = True
    shows_secret: ClassVar[bool] = False

    def __init__(self, name: str, secret: bytes, domain: str) -> None:
        self.name = name
        self.issuer = "tls"
        self.secret = secret
        self.domain = domain

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> SharedKey:
        opts = Options(f"provisioner {name!r}", options)
        secret = (env.data_dir / opts.string("secret_file")).read_bytes().strip()
        provisioner = cls(name, secret, opts.string("domain"))
        if cls.rejects_unknown_options:
            opts.finish()
        return provisioner

    def public_view(self) -> dict[str, Any]:
        view = {**super().public_view(), "domain": self.domain}
        if self.shows_secret:
            view["secret"] = self.secret.decode()
        return view

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        parts = text.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            mac = _unb64(parts[2])
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
            raise Unauthorized("no iss")
        return Credential(text, claims["iss"], (f"{parts[0]}.{parts[1]}".encode(), mac, claims))

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        signing_input, mac, claims = credential.reading
        expected = hmac.new(self.secret, signing_input, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, mac):
            raise Unauthorized("bad HMAC")
        audiences = ctx.audiences if self.checks_audience else frozenset({claims.get("aud")})
        times = check_registered_claims(
            claims,
            issuer=self.name,
            audiences=audiences,
            now=ctx.now,
            max_lifetime=timedelta(minutes=5),
        )
        subject, sans = subject_and_sans(claims)
        if self.checks_names:
            for san in sans:
                if not san.value.endswith("." + self.domain):
                    raise Forbidden(f"{san} is not under {self.domain}")
        use = TokenUse(
            self.name,
            str(claims["jti"]),
            times.replay_until if self.remembers_until_expiry else ctx.now,
        )
        policy = SignPolicy(
            provisioner=self.certificate_ref,
            issuer=self.issuer,
            validators=(CommonNameIs(subject), SANsAre(frozenset(sans))),
            modifiers=(SetSubjectAndSANs(subject, sans),),
        )
        return Authorization(policy=policy, token=use if self.marks_used else None)


class IgnoresAudience(SharedKey):
    type_name: ClassVar[str] = "IGNORESAUDIENCE"
    checks_audience = False


class ForgetsUse(SharedKey):
    type_name: ClassVar[str] = "FORGETSUSE"
    marks_used = False


class ForgetsTooSoon(SharedKey):
    type_name: ClassVar[str] = "FORGETSTOOSOON"
    remembers_until_expiry = False


class AnyName(SharedKey):
    type_name: ClassVar[str] = "ANYNAME"
    checks_names = False


class Lenient(SharedKey):
    type_name: ClassVar[str] = "LENIENT"
    rejects_unknown_options = False


class Leaky(SharedKey):
    type_name: ClassVar[str] = "LEAKY"
    shows_secret = True


def providing(*classes: type[Provisioner]) -> object:
    class Plugin:
        @hookimpl
        def devid_provisioner_types(self) -> Sequence[type[Provisioner]]:
            return list(classes)

    return Plugin()


SECRET = b"a shared secret of the test, long enough"


def check_shared_key(
    ca: LocalCA,
    cls: type[SharedKey],
    *,
    skip: Mapping[str, str] | None = None,
    raise_on_failure: bool = False,
) -> ConformanceReport:
    ca.register_plugin(providing(cls), cls.type_name.lower())
    secret_file = ca.data_dir / "secrets" / "shared.key"
    secret_file.write_bytes(SECRET + b"\n")
    table = {
        "type": cls.type_name,
        "name": "lab",
        "secret_file": "secrets/shared.key",
        "domain": "lab.example.com",
    }

    def mint(request: CredentialRequest) -> str:
        claims = {
            "iss": request.provisioner,
            "sub": request.subject,
            "sans": list(request.sans) or [request.subject],
            "aud": request.audience,
            "nbf": int(request.now.timestamp()),
            "exp": int((request.now + request.lifetime).timestamp()),
            "jti": request.jti,
        }
        return hs256_token(claims, SECRET)

    return check_provisioner(
        ca,
        table,
        mint,
        names=["db.lab.example.com"],
        outside=["www.example.com"],
        skip=skip,
        raise_on_failure=raise_on_failure,
    )


def test_check_provisioner_passes_the_built_in_jwk_provisioner(devid_ca: LocalCA) -> None:
    def mint(request: CredentialRequest) -> str:
        return devid_ca.mint_token(
            request.subject,
            request.sans,
            audience=request.audience,
            now=request.now,
            lifetime=request.lifetime,
            jti=request.jti,
            csr_der=request.csr_der if request.purpose == "sign" else None,
        )

    table = devid_ca.provisioner_table("admin")
    assert table is not None
    report = check_provisioner(devid_ca, table, mint, names=["svc.example.com", "api.example.com"])
    assert report.passed
    # JWK tokens may name any names: there is no policy to step outside of.
    assert [r.name for r in report.skipped] == ["names-outside-policy"]
    assert report.outcome("token-minter") == report.outcome("revocation") == "passed"


def test_check_provisioner_passes_a_sound_type_of_a_plugin(devid_ca: LocalCA) -> None:
    report = check_shared_key(devid_ca, SharedKey)
    assert report.passed, str(report)
    assert report.outcome("refuses-by-default") == "passed"


@pytest.mark.parametrize(
    ("cls", "failed"),
    [
        (IgnoresAudience, {"audience"}),
        (ForgetsUse, {"one-time", "replay-window"}),
        (ForgetsTooSoon, {"replay-window"}),
        (AnyName, {"names-outside-policy"}),
        (Lenient, {"unknown-options"}),
        (Leaky, {"public-view"}),
    ],
)
def test_check_provisioner_names_the_property_a_broken_type_fails(
    devid_ca: LocalCA, cls: type[SharedKey], failed: set[str]
) -> None:
    report = check_shared_key(devid_ca, cls)
    assert {r.name for r in report.failures} == failed, str(report)
    with pytest.raises(AssertionError) as raised:
        raise ConformanceError(report)
    for name in failed:
        assert f"- {name}: " in str(raised.value)


def test_check_provisioner_raises_an_assertion_naming_the_property(devid_ca: LocalCA) -> None:
    with pytest.raises(AssertionError, match=r"fails 1 conformance property:\n- public-view: "):
        check_shared_key(devid_ca, Leaky, raise_on_failure=True)


def test_a_property_that_does_not_apply_is_skipped_with_the_reason(devid_ca: LocalCA) -> None:
    report = check_shared_key(devid_ca, ForgetsUse, skip={"one-time": "reusable by design"})
    assert report.passed, str(report)
    skipped = {r.name: r.detail for r in report.skipped}
    assert skipped["one-time"] == "reusable by design"
    assert skipped["replay-window"] == "one-time use is not claimed"
    assert [r.name for r in report.results] == list(CHECKS)
    with pytest.raises(ValueError, match="no such properties"):
        check_shared_key(devid_ca, SharedKey, skip={"one-tme": "a typo"})


# --- a real devid serve -------------------------------------------------------------------------


def test_devid_server_serves_the_kit_ca_on_each_host(
    devid_server: ServedCA, devid_ca: LocalCA
) -> None:
    key, csr = new_csr("svc.example.com")
    response = devid_server.sign(csr, devid_server.mint_token("svc.example.com"))
    assert response.status_code == 201, response.text
    cert = x509.load_pem_x509_certificate(response.json()["crt"].encode())
    assert cert.public_key() == key.public_key()
    assert devid_ca.certificate(cert.serial_number) is not None  # the same CA, in process too
    assert {p["name"] for p in devid_server.provisioners()} >= {"admin"}
    with devid_server.client() as http:
        assert http.get("/health").json() == {"status": "ok"}


def test_devid_server_factory_names_the_host(
    devid_server_factory: Callable[..., ServedCA],
) -> None:
    served = devid_server_factory("raw")
    assert served.host == "raw" and served.url.startswith("https://127.0.0.1:")
    assert served.audience() == f"{served.url}/1.0/sign"
