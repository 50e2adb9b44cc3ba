"""Support for the TMF conformance tests (tests/web/test_tmf_conformance.py).

The official TM Forum specifications are vendored in ``tests/tmf-specs/`` (Apache-2.0,
LICENSE beside them): CI runs a clean clone where ``../shared/tmf/`` may be absent, and a
test that silently skipped there would prove nothing. A separate test checks the copies
still match ``../shared/tmf/`` wherever that folder exists.

Which operations to test is discovered, never listed: every route of the real app under
``/tmf-api/`` is matched (method + path template, parameter names ignored) against every
spec's ``basePath`` + path. A router that lands later is covered with no edit here.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

REPO = Path(__file__).resolve().parents[2]
SPEC_DIR = REPO / "tests" / "tmf-specs"
SHARED_SPEC_DIR = REPO.parent / "shared" / "tmf"
TMF_PREFIX = "/tmf-api/"

# The TMF676 file says ``basePath: /payment/v4/`` (a known defect of the published file);
# Teleserve serves it where the other APIs' naming puts it (../shared/tmf/README.md).
BASE_PATH_OVERRIDES = {"TMF676": "/tmf-api/paymentManagement/v4/"}
# TMF685 1.0 and TMF658 predate the TMF630 v4 error body: their ``Error`` has an integer
# ``code`` / ``status`` (TMF685 even an integer ``reason``, "text that explains the
# reason"). Teleserve answers one error body under /tmf-api (strings, as every other v4
# spec defines it), so these two are checked against the v4 ``Error`` of TMF632.
OLD_ERROR_SPECS = frozenset({"TMF658", "TMF685"})
V4_ERROR_SPEC = "TMF632"

# Reads first (of every API), then creates, then updates, deletes last: deleting seeded
# records early would turn other operations' requests on them into 404s.
METHOD_ORDER = {"GET": 0, "POST": 1, "PUT": 2, "PATCH": 3, "DELETE": 4}
_PARAM = re.compile(r"\{[^}/]+\}")


def template_key(path: str) -> str:
    """A path template with its parameter names erased: ``/a/{id}`` ~ ``/a/{a_id}``."""
    return _PARAM.sub("{}", path.rstrip("/") or "/")


def spec_names() -> list[str]:
    return sorted(p.name.split(".", 1)[0] for p in SPEC_DIR.glob("TMF*.swagger.json"))


@functools.cache
def _raw_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((SPEC_DIR / f"{name}.swagger.json").read_text("utf-8"))
    if name in BASE_PATH_OVERRIDES:
        spec["basePath"] = BASE_PATH_OVERRIDES[name]
    if name in OLD_ERROR_SPECS:
        spec["definitions"]["Error"] = _raw_spec(V4_ERROR_SPEC)["definitions"]["Error"]
    _close_dangling_refs(spec)
    return spec


def _close_dangling_refs(spec: dict[str, Any]) -> None:
    """Define what a spec references but never defines (TMF685 1.0: ``ResourceRelationship``,
    ``ResourceCharacteristic``, ``BundledProductOfferingRef``, and ``@type`` typed as
    ``#/definitions/int``). Left dangling, schemathesis silently drops the request body of
    every operation that reaches one, so nothing would be sent. An undefined resource
    becomes an open object; an ``@type`` is the string TMF630 makes it."""
    definitions = spec.setdefault("definitions", {})

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict) and _dangling(properties.get("@type"), definitions):
                properties["@type"] = {"type": "string"}
            ref = node.get("$ref")
            if isinstance(ref, str) and _dangling(node, definitions):
                definitions[ref.rsplit("/", 1)[1]] = {"type": "object"}
            for value in list(node.values()):
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(spec)


def _dangling(node: Any, definitions: dict[str, Any]) -> bool:
    ref = node.get("$ref") if isinstance(node, dict) else None
    return (
        isinstance(ref, str)
        and ref.startswith("#/definitions/")
        and ref.rsplit("/", 1)[1] not in definitions
    )


def load_spec(name: str) -> dict[str, Any]:
    """The spec as a fresh dict (callers and schemathesis may annotate it)."""
    return copy.deepcopy(_raw_spec(name))


def base_path(name: str) -> str:
    return "/" + str(_raw_spec(name)["basePath"]).strip("/")


def relaxed(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with every object schema's ``required`` list removed.

    A ``fields=a,b`` selection answers only the named attributes plus the identifying
    ones (``id``, ``href``, ``@type``...): TMF630 defines the selection, the resource
    schemas still list the attributes a full resource must carry. Responses to a
    selection are checked against this copy — same types, formats and enums, no
    required attributes. Parameters keep their boolean ``required``.
    """

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: strip(value)
                for key, value in node.items()
                if not (key == "required" and isinstance(value, list))
            }
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    result: dict[str, Any] = strip(spec)
    return result


@dataclass(frozen=True, order=True)
class SpecOperation:
    """One operation of a spec that the app implements."""

    sort_key: tuple[int, str, str]
    spec: str  # "TMF632"
    method: str  # "GET"
    spec_path: str  # "/individual/{id}", as the spec writes it
    app_path: str  # "/tmf-api/party/v4/individual/{id}", as the app routes it

    @property
    def label(self) -> str:
        return f"{self.spec} {self.method} {self.app_path}"

    @property
    def base_url(self) -> str:
        return "http://testserver" + base_path(self.spec)

    @property
    def has_id(self) -> bool:
        return self.spec_path.rstrip("/").endswith("/{id}")

    @property
    def collection_path(self) -> str:
        """The app path of the collection an ``/{id}`` operation addresses."""
        return self.app_path.rstrip("/").rsplit("/", 1)[0]


@dataclass(frozen=True)
class Discovery:
    operations: list[SpecOperation]
    # TMF routes under a spec's base path that the spec does not define (extensions).
    extensions: list[tuple[str, str]]
    # TMF routes under no spec's base path at all (a misspelt base path, say).
    unknown: list[tuple[str, str]]


def app_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route under ``/tmf-api/``; HEAD/OPTIONS are implied.

    FastAPI keeps an included router as one entry of ``app.routes``;
    ``iter_route_contexts`` walks into them with the include prefix applied."""
    for route in iter_route_contexts(app.routes):
        path, methods = route.path, route.methods
        if path is not None and methods and path.startswith(TMF_PREFIX):
            for method in sorted(set(methods) - {"HEAD", "OPTIONS"}):
                yield method, path


def discover(routes: Iterable[tuple[str, str]]) -> Discovery:
    spec_ops: dict[tuple[str, str], tuple[str, str]] = {}
    bases: list[str] = []
    for name in spec_names():
        spec = _raw_spec(name)
        base = base_path(name)
        bases.append(base)
        for path, item in spec["paths"].items():
            for method in item:
                if method.upper() in METHOD_ORDER:
                    key = (method.upper(), template_key(base + path))
                    spec_ops[key] = (name, path)
    operations, extensions, unknown = [], [], []
    for method, path in sorted(set(routes)):
        found = spec_ops.get((method, template_key(path)))
        if found is not None:
            name, spec_path = found
            operations.append(
                SpecOperation(
                    (METHOD_ORDER[method], name, spec_path), name, method, spec_path, path
                )
            )
        elif any(path == b or path.startswith(b + "/") for b in bases):
            extensions.append((method, path))
        else:
            unknown.append((method, path))
    return Discovery(sorted(operations), extensions, unknown)
