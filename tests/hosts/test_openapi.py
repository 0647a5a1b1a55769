"""``GET /openapi.json``: the hand-written OpenAPI document of hosts/http/api.py, checked
against the route table it describes.

- Every route of the router is in the document with the same method and access class,
  and every operation of the document is a route: a new route fails this test until it
  is documented in hosts/http/openapi.json (and docs/api.md).
- Both hosts serve the document.
- schemathesis generates requests from the document's schemas for every anonymous
  operation and sends them to a served CA (``devid serve`` in a subprocess, each host in
  turn, rate limit off): none may be answered with a 5xx.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from hosts.core.authority import Authority
from hosts.http.api import build_router
from hosts.http.routing import Access
from hosts.testing.servers import HOSTS, DevidServer, start_devid_serve
from tests.conftest import CA, PASSWORD, RunningServer
from tests.hosts.helpers import tls_context

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "hosts" / "http" / "openapi.json"
DOCUMENT: dict[str, Any] = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PATH_PARAM = re.compile(r"\{(\w+)(:path)?\}")


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, path) -> the operation object, for every operation of *document*."""
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def router_routes(authority: Authority) -> dict[tuple[str, str], Access]:
    """(METHOD, path as OpenAPI writes it) -> access, for every route of the route table."""
    router = build_router(authority)
    return {
        (route.method, _PATH_PARAM.sub(r"{\1}", route.pattern)): route.access
        for route in router._routes
    }


def test_every_route_is_documented_and_every_documented_route_exists(
    authority: Authority,
) -> None:
    routes = router_routes(authority)
    documented = operations(DOCUMENT)
    missing = sorted(set(routes) - set(documented))
    assert not missing, (
        f"routes of hosts/http/api.py missing from hosts/http/openapi.json: {missing};"
        " document them there (and in docs/api.md)"
    )
    stale = sorted(set(documented) - set(routes))
    assert not stale, f"hosts/http/openapi.json documents routes that do not exist: {stale}"
    for key, access in routes.items():
        assert documented[key].get("x-devid-access") == access.value, (key, access)


API_DOC = DOCUMENT_PATH.parents[2] / "docs" / "api.md"


def documented_in_api_md() -> set[tuple[str, str]]:
    """(METHOD, path) for every row of docs/api.md's table of routes."""
    text = API_DOC.read_text(encoding="utf-8")
    table = text[text.index("\n## Routes\n") : text.index("\n## Errors\n")]
    rows = re.findall(r"^\| ([A-Z, ]+) \| `([^`]+)` \|", table, flags=re.MULTILINE)
    return {(method.strip(), path) for methods, path in rows for method in methods.split(",")}


def test_every_route_is_in_the_table_of_docs_api_md(authority: Authority) -> None:
    missing = sorted(set(router_routes(authority)) - documented_in_api_md())
    assert not missing, f"routes missing from the table of routes in docs/api.md: {missing}"
    text = API_DOC.read_text(encoding="utf-8")
    for section in ("## Devices: `/api/v1/devices`", "## Attestation: ", "## ACME: "):
        assert f"\n{section}" in text, section


def test_the_document_is_consistent() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    ids = [op["operationId"] for op in operations(DOCUMENT).values()]
    assert len(ids) == len(set(ids)), "operationIds are unique"

    def resolve(ref: str) -> Any:
        node: Any = DOCUMENT
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for ref in walk(DOCUMENT):
        assert ref.startswith("#/") and resolve(ref) is not None, ref
    for path, item in DOCUMENT["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            if method not in METHODS:
                continue
            declared = {
                p.get("name") or resolve(p["$ref"])["name"]
                for p in [*item.get("parameters", []), *operation.get("parameters", [])]
                if (p.get("in") or resolve(p["$ref"])["in"]) == "path"
            }
            assert declared == names, (method, path, declared, names)
            assert operation["responses"], (method, path)
    # schemathesis reads it (and would refuse a document it cannot use).
    assert len(list(schemathesis.openapi.from_dict(DOCUMENT).get_all_operations())) == len(ids)


async def test_both_hosts_serve_the_document(server: RunningServer) -> None:
    async with httpx.AsyncClient(verify=tls_context(server.root_path)) as http:
        response = await http.get(f"{server.url}/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == DOCUMENT


# --- generated requests to the anonymous operations -------------------------------------------


def anonymous_document() -> dict[str, Any]:
    """The document with only the operations a client may call without a credential."""
    document: dict[str, Any] = json.loads(json.dumps(DOCUMENT))
    for path, item in list(document["paths"].items()):
        for method in [m for m in item if m in METHODS]:
            if item[method]["x-devid-access"] == "credential":
                del item[method]
        if not any(m in METHODS for m in item):
            del document["paths"][path]
    return document


# SCEP's PKI messages are opaque bytes to the generator.
schemathesis.serializer.alias("application/x-pki-message", "application/octet-stream")
ANONYMOUS = schemathesis.openapi.from_dict(anonymous_document())


@pytest.fixture(scope="module", params=HOSTS)
def served_ca(
    _ca_template: CA, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[DevidServer]:
    """``devid serve`` (each host in turn) on a copy of the test CA, without a rate limit
    so that the generated requests reach their handlers."""
    base = tmp_path_factory.mktemp(f"openapi-{request.param}")
    data = base / "ca"
    shutil.copytree(_ca_template.data_dir, data)
    config = data / "devid.toml"
    text = config.read_text()
    assert "[server]\n" in text
    text = text.replace("[server]\n", "[server]\nrate_limit_per_second = 0\n", 1)
    # A SCEP provisioner, so that generated SCEP requests can reach one.
    config.write_text(
        text + '\n[[provisioners]]\ntype = "SCEP"\nname = "scep"\none_time_challenges = true\n'
    )
    password = base / "password"
    password.write_bytes(PASSWORD)
    server = start_devid_serve(data, base / "serve.log", host=request.param, password_file=password)
    try:
        yield server
    finally:
        server.stop()


@ANONYMOUS.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_generated_anonymous_requests_never_get_a_server_error(
    case: Any, served_ca: DevidServer
) -> None:
    response = case.call(base_url=served_ca.url, verify=str(served_ca.root_path), timeout=30)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
