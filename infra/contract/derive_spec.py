"""Derive the Batch API subset of OpenAI's published OpenAPI spec, plus what upstream leaves out.

    python -m infra.contract.derive_spec --check   # exit 1 if openapi-batches.yaml is stale
    python -m infra.contract.derive_spec --write   # regenerate it

Upstream is copied verbatim for the four batch operations and every component they reach.
Everything this module adds carries `x-batch-canceller-added: true` (see README.md here):
- error answers (401, 404, 409, 429, 500) with OpenAI's `ErrorResponse` body, because upstream
  declares only the 200 and the client's whole error handling hangs on those bodies;
- `x-request-id` on every answer, which the client logs and the real API always sends;
- `null` for the Batch fields that upstream's own examples show as `null`, and for the cursor
  IDs of an empty ListBatchesResponse page (as upstream's other cursor lists declare them);
- `minimum`/`maximum` on `limit`, which upstream states only in prose ("between 1 and 100").
"""

from __future__ import annotations

import argparse
import copy
import difflib
import hashlib
import re
import sys
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

UPSTREAM_REPOSITORY = "openai/openai-openapi"
UPSTREAM_COMMIT = "f85dbe223d40e1a31cba812ab2d755c7e98a92a3"
REPO_ROOT = Path(__file__).resolve().parents[2]
# shared/ lies beside the checkout, in development and in CI (where the checkout moves).
UPSTREAM_DIR = REPO_ROOT.parent / "shared" / "openai-openapi"
DERIVED_SPEC = Path(__file__).resolve().parent / "openapi-batches.yaml"

ADDED = "x-batch-canceller-added"

# Path -> the methods kept. The batch endpoints are all the canceller (and its tests) touch.
OPERATIONS: dict[str, tuple[str, ...]] = {
    "/batches": ("post", "get"),
    "/batches/{batch_id}": ("get",),
    "/batches/{batch_id}/cancel": ("post",),
}

# Error answers added per operationId. 404/409 only where a batch ID is in the path.
ERROR_STATUSES: dict[str, tuple[str, ...]] = {
    "createBatch": ("401", "429", "500"),
    "listBatches": ("401", "429", "500"),
    "retrieveBatch": ("401", "404", "429", "500"),
    "cancelBatch": ("401", "404", "409", "429", "500"),
}

LIMIT_MINIMUM, LIMIT_MAXIMUM = 1, 100
# An empty page has no first or last ID. Upstream types them as plain strings here, yet declares
# them nullable on its other cursor lists (ListFineTuningJobCheckpointsResponse, ProjectListResponse
# and more), and the canceller pages by `data[-1].id`, never by these.
NULLABLE_LIST_FIELDS = ("first_id", "last_id")

_REQUEST_ID_HEADER: dict[str, Any] = {
    "description": "Unique ID of the request; quote it to OpenAI support.",
    "schema": {"type": "string"},
    "example": "req_5d3a51a8b8c4f0e2a1d6c9b7e4f3a2b1",
    ADDED: True,
}


def _error(message: str, type_: str = "invalid_request_error", code: str | None = None) -> Any:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


# Bodies as the real API words them (the 409 text is quoted in DESIGN.md). The first example of
# each status is what Prism answers with unless `Prefer: example=<name>` picks another.
_ERROR_ANSWERS: dict[str, tuple[str, dict[str, Any]]] = {
    "401": (
        "The API key is missing, invalid or revoked.",
        {
            "missing_api_key": _error(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). "
                "You can obtain an API key from https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            ),
            "invalid_api_key": _error(
                "Incorrect API key provided: sk-t****. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            ),
        },
    ),
    "404": (
        "No batch with this ID exists in the organization and project of the key.",
        {"not_found": _error("No batch found with id 'batch_abc123'.")},
    ),
    "409": (
        "The batch is already in a terminal status and cannot be cancelled.",
        {
            f"already_{status}": _error(f"Cannot cancel a batch with status '{status}'.")
            for status in ("completed", "failed", "expired", "cancelled")
        },
    ),
    "429": (
        "",  # upstream's TooManyRequests description is kept
        {
            "rate_limited": _error(
                "Rate limit reached for requests. Please try again in 20ms.",
                type_="requests",
                code="rate_limit_exceeded",
            )
        },
    ),
    "500": (
        "The server had an error while processing the request; retrying may succeed.",
        {
            "server_error": _error(
                "The server had an error while processing your request. Sorry about that!",
                type_="server_error",
            )
        },
    ),
}


class DerivationError(Exception):
    """Upstream no longer looks the way this derivation expects."""


@cache
def load_upstream(upstream_dir: Path = UPSTREAM_DIR) -> dict[str, Any]:
    """The upstream spec, parsed once per process; callers must not modify it."""
    spec_path = upstream_dir / "openapi.yaml"
    if not spec_path.is_file():
        raise DerivationError(f"the upstream spec is expected at {spec_path}")
    # The upstream file is ~3 MB: libyaml parses it in about a second, pure Python in ~30.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec_path.open("rb") as stream:
        document: dict[str, Any] = yaml.load(stream, Loader=loader)  # noqa: S506 - safe loader
    return document


def upstream_commit(upstream_dir: Path) -> str:
    """The commit SOURCE.md records for the copy in shared/."""
    text = (upstream_dir / "SOURCE.md").read_text(encoding="utf-8")
    match = re.search(r"Commit:\s*([0-9a-f]{40})", text)
    if match is None:
        raise DerivationError(f"{upstream_dir / 'SOURCE.md'} names no commit")
    return match.group(1)


def derive(
    upstream: dict[str, Any], *, source_sha256: str, commit: str = UPSTREAM_COMMIT
) -> dict[str, Any]:
    """The subset as a document; `upstream` is not modified."""
    paths = {path: _path_item(upstream, path, methods) for path, methods in OPERATIONS.items()}
    components = upstream.get("components", {})
    security = copy.deepcopy(upstream.get("security", []))

    _add_error_answers(paths, components)
    _add_request_id_headers(paths)
    _bound_list_limit(paths)

    derived_components: dict[str, Any] = {
        section: {name: copy.deepcopy(components[section][name]) for name in sorted(names)}
        for section, names in sorted(_referenced(paths, components).items())
    }
    schemes = components.get("securitySchemes", {})
    used_schemes = sorted(
        {name for requirement in _security_requirements(security, paths) for name in requirement}
    )
    missing = [name for name in used_schemes if name not in schemes]
    if missing:
        raise DerivationError(f"security schemes not defined upstream: {missing}")
    derived_components["securitySchemes"] = {
        name: copy.deepcopy(schemes[name]) for name in used_schemes
    }
    _make_example_nulls_nullable(upstream, paths, derived_components["schemas"])
    _make_nullable(derived_components["schemas"], "ListBatchesResponse", NULLABLE_LIST_FIELDS)

    used_tags = {
        tag for item in paths.values() for op in _operations(item) for tag in op.get("tags", [])
    }
    return {
        "openapi": upstream["openapi"],
        "info": _info(upstream["info"], source_sha256, commit),
        "servers": copy.deepcopy(upstream.get("servers", [])),
        "security": security,
        "tags": [copy.deepcopy(t) for t in upstream.get("tags", []) if t["name"] in used_tags],
        "paths": paths,
        "components": derived_components,
    }


def _info(upstream_info: dict[str, Any], source_sha256: str, commit: str) -> dict[str, Any]:
    return {
        "title": f"{upstream_info['title']}: Batch subset for batch-canceller",
        "description": (
            "The batch operations of OpenAI's published OpenAPI spec and the components they "
            "reference, verbatim, plus additions marked `x-batch-canceller-added: true`. "
            "Generated by `python -m infra.contract.derive_spec --write`; do not edit by hand."
        ),
        "version": upstream_info["version"],
        "license": copy.deepcopy(upstream_info.get("license")),
        "x-derived-from": {
            "repository": UPSTREAM_REPOSITORY,
            "commit": commit,
            "path": "openapi.yaml",
            "sha256": source_sha256,
            "licence": "MIT, Copyright (c) OpenAI (https://openai.com); full text in the header",
        },
    }


def _path_item(upstream: dict[str, Any], path: str, methods: Sequence[str]) -> dict[str, Any]:
    item = upstream.get("paths", {}).get(path)
    if item is None:
        raise DerivationError(f"upstream has no path {path}")
    absent = [method for method in methods if method not in item]
    if absent:
        raise DerivationError(f"upstream {path} lacks {absent}")
    http_methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    return {
        key: copy.deepcopy(value)
        for key, value in item.items()
        if key not in http_methods or key in methods
    }


def _operations(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for value in item.values():
        if isinstance(value, dict) and "operationId" in value:
            yield value


def _add_error_answers(paths: dict[str, Any], components: dict[str, Any]) -> None:
    schemas = components.get("schemas", {})
    if "ErrorResponse" not in schemas or "Error" not in schemas:
        raise DerivationError("upstream no longer defines ErrorResponse/Error")
    too_many = components.get("responses", {}).get("TooManyRequests")
    if too_many is None:
        raise DerivationError("upstream no longer defines responses/TooManyRequests")
    for item in paths.values():
        for operation in _operations(item):
            statuses = ERROR_STATUSES.get(operation["operationId"])
            if statuses is None:
                raise DerivationError(f"no error answers chosen for {operation['operationId']}")
            responses = operation["responses"]
            for status in statuses:
                if status in responses:
                    raise DerivationError(
                        f"upstream now declares {status} for {operation['operationId']}: "
                        "drop the addition and review its body"
                    )
                responses[status] = _error_answer(status, too_many)


def _error_answer(status: str, too_many: dict[str, Any]) -> dict[str, Any]:
    description, examples = _ERROR_ANSWERS[status]
    # 429 starts from upstream's own TooManyRequests (its Retry-After header included).
    answer: dict[str, Any] = (
        copy.deepcopy(too_many) if status == "429" else {"description": description}
    )
    answer[ADDED] = True
    answer["content"] = {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorResponse"},
            "examples": {name: {"value": copy.deepcopy(value)} for name, value in examples.items()},
        }
    }
    return answer


def _add_request_id_headers(paths: dict[str, Any]) -> None:
    for item in paths.values():
        for operation in _operations(item):
            for answer in operation["responses"].values():
                answer.setdefault("headers", {})["x-request-id"] = copy.deepcopy(_REQUEST_ID_HEADER)


def _bound_list_limit(paths: dict[str, Any]) -> None:
    for parameter in paths["/batches"]["get"].get("parameters", []):
        if parameter.get("in") == "query" and parameter.get("name") == "limit":
            schema = parameter["schema"]
            if "minimum" in schema or "maximum" in schema:
                raise DerivationError("upstream now bounds `limit`: drop the addition")
            schema.update({"minimum": LIMIT_MINIMUM, "maximum": LIMIT_MAXIMUM, ADDED: True})
            return
    raise DerivationError("listBatches has no `limit` query parameter upstream")


def _make_example_nulls_nullable(
    upstream: dict[str, Any], paths: dict[str, Any], schemas: dict[str, Any]
) -> None:
    """Upstream types e.g. `cancelled_at` as a plain integer, yet its own examples (and the real
    API) show `null` there. Every Batch property an upstream example shows as null may be null."""
    texts = [str(schemas["Batch"].get("x-oaiMeta", {}).get("example", ""))]
    for path in OPERATIONS:
        for operation in _operations(upstream["paths"][path]):
            examples = operation.get("x-oaiMeta", {}).get("examples", {})
            if isinstance(examples, dict):
                texts.append(str(examples.get("response", "")))
    shown_null = set(re.findall(r'"(\w+)":\s*null\b', "\n".join(texts)))
    batch = schemas["Batch"]
    optional = set(batch["properties"]) - set(batch.get("required", []))
    _make_nullable(schemas, "Batch", sorted(shown_null & optional))


def _make_nullable(schemas: dict[str, Any], schema: str, names: Sequence[str]) -> None:
    properties = schemas[schema]["properties"]
    for name in names:
        if name not in properties:
            raise DerivationError(f"upstream {schema} has no property {name!r}")
        prop = properties[name]
        if not _allows_null(prop, schemas):
            properties[name] = {"anyOf": [prop, {"type": "null"}], ADDED: True}


def _allows_null(schema: dict[str, Any], schemas: dict[str, Any]) -> bool:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _allows_null(schemas[ref.rsplit("/", 1)[-1]], schemas)
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_allows_null(s, schemas) for s in schema.get("anyOf", []) + schema.get("oneOf", []))


def _referenced(root: Any, components: dict[str, Any]) -> dict[str, set[str]]:
    """Every `#/components/<section>/<name>` reachable from `root`, transitively."""
    found: dict[str, set[str]] = {}
    pending = list(_refs(root))
    while pending:
        ref = pending.pop()
        parts = ref.split("/")
        if len(parts) != 4 or parts[:2] != ["#", "components"]:
            raise DerivationError(f"unsupported $ref {ref!r}")
        section, name = parts[2], parts[3].replace("~1", "/").replace("~0", "~")
        if name in found.setdefault(section, set()):
            continue
        target = components.get(section, {}).get(name)
        if target is None:
            raise DerivationError(f"dangling $ref {ref!r}")
        found[section].add(name)
        pending.extend(_refs(target))
    return found


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _security_requirements(
    security: list[dict[str, Any]], paths: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    yield from security
    for item in paths.values():
        for operation in _operations(item):
            yield from operation.get("security", [])


def _no_aliases(dumper: Any, data: Any) -> bool:
    return True


# Pure-Python emitter (the same output with or without libyaml), without anchors or aliases.
# Built with type() so it type-checks with and without PyYAML stubs.
_Dumper = type("_Dumper", (yaml.SafeDumper,), {"ignore_aliases": _no_aliases})


def render(document: dict[str, Any], licence_text: str, commit: str = UPSTREAM_COMMIT) -> str:
    licence = "\n".join(f"#   {line}".rstrip() for line in licence_text.strip().splitlines())
    header = (
        "# GENERATED by `python -m infra.contract.derive_spec --write`: do not edit.\n"
        f"# Derived from {UPSTREAM_REPOSITORY} openapi.yaml at commit {commit}.\n"
        f"# Additions are marked `{ADDED}: true`; infra/contract/README.md lists them.\n"
        "# The upstream document is distributed under this licence:\n#\n"
        f"{licence}\n\n"
    )
    body: str = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return header + body


def derive_text(upstream_dir: Path = UPSTREAM_DIR) -> str:
    """The subset's file content, header comment included."""
    upstream = load_upstream(upstream_dir)
    commit = upstream_commit(upstream_dir)
    if commit != UPSTREAM_COMMIT:
        raise DerivationError(
            f"{upstream_dir} is commit {commit}, this derivation pins {UPSTREAM_COMMIT}: "
            "review the upstream change, then update UPSTREAM_COMMIT"
        )
    digest = hashlib.sha256((upstream_dir / "openapi.yaml").read_bytes()).hexdigest()
    document = derive(upstream, source_sha256=digest, commit=commit)
    return render(document, (upstream_dir / "LICENSE").read_text(encoding="utf-8"), commit)


def check(derived: Path = DERIVED_SPEC, upstream_dir: Path = UPSTREAM_DIR) -> list[str]:
    """Diff lines between the committed subset and a fresh derivation; empty when in sync."""
    fresh = derive_text(upstream_dir)
    committed = derived.read_text(encoding="utf-8") if derived.exists() else ""
    if fresh == committed:
        return []
    return list(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            fromfile=f"{derived} (committed)",
            tofile="fresh derivation",
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.contract.derive_spec", description=__doc__
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if the subset is stale")
    mode.add_argument("--write", action="store_true", help="regenerate the subset")
    parser.add_argument("--upstream", type=Path, default=UPSTREAM_DIR, help="upstream folder")
    parser.add_argument("--derived", type=Path, default=DERIVED_SPEC, help="the subset's file")
    args = parser.parse_args(argv)
    try:
        if args.write:
            args.derived.write_text(derive_text(args.upstream), encoding="utf-8")
            print(f"wrote {args.derived}")
            return 0
        diff = check(args.derived, args.upstream)
    except (DerivationError, OSError) as exc:
        print(f"derive_spec: {exc}", file=sys.stderr)
        return 2
    if diff:
        sys.stdout.writelines(diff[:200])
        print(
            f"\n{args.derived} differs from a fresh derivation "
            "(python -m infra.contract.derive_spec --write regenerates it)",
            file=sys.stderr,
        )
        return 1
    print(f"{args.derived.name} matches {UPSTREAM_REPOSITORY}@{UPSTREAM_COMMIT[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
