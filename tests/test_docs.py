"""docs/plugins.md stays true: every hook is documented, and the example plugin works.

Like datasette's test_docs.py, a hook added to plugins/hookspecs.py without a
docstring or without a ``### devid_<name>`` section in docs/plugins.md fails here.
"""

from __future__ import annotations

import inspect
import re
import tomllib
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from engine.errors import Forbidden
from engine.extensions import ProvisionerRef
from engine.jose import jwk_from_public_key, sign_compact
from hosts.core.authority import Authority
from plugins import hookspecs
from plugins.manager import PluginManager
from tests.conftest import CA, REPO_ROOT, new_csr, renew_json, sign_json

PLUGINS_MD = REPO_ROOT / "docs" / "plugins.md"


def hookspec_functions() -> dict[str, Callable[..., Any]]:
    marker = f"{hookspecs.PROJECT}_spec"  # the attribute pluggy's HookspecMarker sets
    return {
        name: value
        for name, value in vars(hookspecs).items()
        if inspect.isfunction(value) and hasattr(value, marker)
    }


def doc_text() -> str:
    return PLUGINS_MD.read_text(encoding="utf-8")


def documented_hooks() -> set[str]:
    return set(re.findall(r"^### (devid_\w+)\s*$", doc_text(), flags=re.MULTILINE))


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", doc_text(), flags=re.MULTILINE | re.DOTALL)


HOOKS = sorted(hookspec_functions())


def test_hookspecs_are_found() -> None:
    assert {"devid_provisioner_types", "devid_check_sign", "devid_audit"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hookspec_has_a_docstring(hook: str) -> None:
    doc = inspect.getdoc(hookspec_functions()[hook])
    assert doc, f"plugins/hookspecs.py: {hook} has no docstring"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hookspec_is_documented_in_plugins_md(hook: str) -> None:
    assert hook in documented_hooks(), f"docs/plugins.md has no '### {hook}' section"


def test_plugins_md_documents_no_hook_that_does_not_exist() -> None:
    stale = documented_hooks() - set(HOOKS)
    assert not stale, f"docs/plugins.md documents hooks that no longer exist: {sorted(stale)}"


def test_hook_sections_sit_under_the_hooks_heading() -> None:
    text = doc_text()
    start = text.index("\n## Hooks\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else None]
    for hook in HOOKS:
        assert f"\n### {hook}\n" in section


def test_documented_entry_point_matches_pyproject() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    entry_points = pyproject["project"]["entry-points"]["devid"]
    assert entry_points["jwk"] == "plugins.jwk"
    assert '[project.entry-points.devid]\njwk = "plugins.jwk"' in doc_text()


def test_every_toml_example_parses() -> None:
    blocks = code_blocks("toml")
    assert blocks
    for block in blocks:
        tomllib.loads(block)


def test_every_python_example_compiles() -> None:
    blocks = code_blocks("python")
    assert blocks
    for block in blocks:
        compile(block, "docs/plugins.md", "exec")


def test_disabling_syntax_in_the_docs_is_what_devid_toml_reads() -> None:
    tables = [tomllib.loads(b) for b in code_blocks("toml")]
    assert {"plugins": {"disabled": ["jwk"]}} in tables


# --- the example provisioner type, run through the real pipeline --------------------------------


def example_plugin_module() -> types.ModuleType:
    text = doc_text()
    start = text.index("### Example: a provisioner type")
    source = re.search(r"```python\n(.*?)^```", text[start:], flags=re.MULTILINE | re.DOTALL)
    assert source is not None
    module = types.ModuleType("devid_domainkey")
    exec(compile(source.group(1), "docs/plugins.md (example)", "exec"), module.__dict__)
    return module


@pytest.fixture
def lab_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def example_authority(ca: CA, lab_key: ec.EllipticCurvePrivateKey) -> Iterator[Authority]:
    manager = PluginManager()
    manager.register(example_plugin_module(), name="domainkey")
    path = ca.data_dir / "devid.toml"
    config = tomllib.loads(path.read_text())
    config["provisioners"].append(
        {
            "type": "DOMAINKEY",
            "name": "lab",
            "domain": "lab.example.com",
            "key": jwk_from_public_key(lab_key.public_key()),
        }
    )
    path.write_text(tomli_w.dumps(config))
    authority = Authority.load(ca.data_dir, ca.password, plugins=manager)
    authority.set_base_urls(["https://ca.test"])
    yield authority
    authority.close()
    manager.unregister("domainkey")


def _lab_token(key: ec.EllipticCurvePrivateKey, subject: str, authority: Authority) -> str:
    now = int(authority.clock.now().timestamp())
    claims = {
        "iss": "lab",
        "sub": subject,
        "aud": "https://ca.test/1.0/sign",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    return sign_compact(claims, key)


def test_example_plugin_issues_names_under_its_domain(
    example_authority: Authority, lab_key: ec.EllipticCurvePrivateKey
) -> None:
    name = "db.lab.example.com"
    response = sign_json(
        example_authority,
        {"csr": new_csr(name)[2], "ott": _lab_token(lab_key, name, example_authority)},
    )
    cert = x509.load_pem_x509_certificate(response["crt"].encode())
    assert cert.subject.rfc4514_string() == f"CN={name}"
    assert ProvisionerRef.from_certificate(cert) == ProvisionerRef("DOMAINKEY", "lab")


def test_example_plugin_forbids_names_outside_its_domain(
    example_authority: Authority, lab_key: ec.EllipticCurvePrivateKey
) -> None:
    name = "www.example.com"
    with pytest.raises(Forbidden, match="not a name under"):
        sign_json(
            example_authority,
            {"csr": new_csr(name)[2], "ott": _lab_token(lab_key, name, example_authority)},
        )
    assert example_authority.stores.certificates.count_certificates() == 0


def test_example_plugin_public_view_is_public(example_authority: Authority) -> None:
    view = example_authority.provisioners["lab"].public_view()
    assert view["type"] == "DOMAINKEY"
    assert "d" not in view["key"]


def test_example_plugin_renews_only_names_still_under_its_domain(
    example_authority: Authority, lab_key: ec.EllipticCurvePrivateKey
) -> None:
    name = "db.lab.example.com"
    response = sign_json(
        example_authority,
        {"csr": new_csr(name)[2], "ott": _lab_token(lab_key, name, example_authority)},
    )
    der = x509.load_pem_x509_certificate(response["crt"].encode()).public_bytes(Encoding.DER)
    renewed = x509.load_pem_x509_certificate(renew_json(example_authority, der)["crt"].encode())
    record = example_authority.stores.certificates.get_certificate(
        format(renewed.serial_number, "x")
    )
    assert record is not None and record.provisioner_name == "lab"
    assert record.evidence["renewal"]["checked"] == {"domain": "lab.example.com"}
    example_authority.provisioners["lab"].domain = "other.example.com"  # type: ignore[attr-defined]
    with pytest.raises(Forbidden, match=r"no longer under other\.example\.com"):
        renew_json(example_authority, der)
