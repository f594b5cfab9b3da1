"""Helpers shared by the contract tests: the derived spec and JSON Schema validators for it."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from infra.contract.derive_spec import ADDED, DERIVED_SPEC

SPEC_URI = "urn:batch-canceller:openapi-batches"


@cache
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DERIVED_SPEC.read_text(encoding="utf-8"))
    return document


@cache
def _registry() -> Registry[Any]:
    # OpenAPI 3.1 schemas are JSON Schema 2020-12 (no 3.0 `nullable` to convert); `$ref`s
    # such as `#/components/schemas/Batch` resolve inside the whole document.
    assert spec()["openapi"].startswith("3.1"), "the validators assume OpenAPI 3.1 schemas"
    resource = Resource.from_contents(spec(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


def validator(schema_name: str) -> Draft202012Validator:
    assert schema_name in spec()["components"]["schemas"], f"no schema {schema_name} in the spec"
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}, registry=_registry()
    )


def violations(schema_name: str, instance: Any) -> list[str]:
    """Every way `instance` breaks the schema, as `path: message` lines (empty when valid)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator(schema_name).iter_errors(instance)
    ]


def response_schema_name(path: str, method: str, status: str) -> str:
    """The component schema the spec declares for one answer, e.g. Batch for cancel's 200."""
    answer = spec()["paths"][path][method]["responses"][status]
    ref: str = answer["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[-1]


def added_response(path: str, method: str, status: str) -> dict[str, Any]:
    answer: dict[str, Any] = spec()["paths"][path][method]["responses"][status]
    assert answer.get(ADDED) is True, f"{method} {path} {status} is not one of our additions"
    return answer


def example_names(path: str, method: str, status: str) -> list[str]:
    content = spec()["paths"][path][method]["responses"][status]["content"]["application/json"]
    return list(content.get("examples", {}))


def example_value(path: str, method: str, status: str, name: str) -> Any:
    content = spec()["paths"][path][method]["responses"][status]["content"]["application/json"]
    return content["examples"][name]["value"]
