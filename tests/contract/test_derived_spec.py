"""The committed Batch subset is what derive_spec makes of OpenAI's spec, and only that."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from infra.contract import derive_spec
from infra.contract.derive_spec import ADDED, DERIVED_SPEC, OPERATIONS, UPSTREAM_DIR
from tests.contract.fixtures import spec, violations


def test_committed_subset_matches_a_fresh_derivation_from_upstream() -> None:
    diff = derive_spec.check()
    assert not diff, (
        "infra/contract/openapi-batches.yaml is stale or hand-edited; run "
        "`python -m infra.contract.derive_spec --write` and review the change:\n"
        + "".join(diff[:80])
    )


def test_check_exits_non_zero_when_the_committed_subset_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tampered = tmp_path / "openapi-batches.yaml"
    tampered.write_text(
        DERIVED_SPEC.read_text(encoding="utf-8").replace("cancelBatch", "cancelBatchRenamed")
    )

    assert derive_spec.main(["--check", "--derived", str(tampered)]) == 1
    assert "cancelBatchRenamed" in capsys.readouterr().out  # the diff shows what differs
    assert derive_spec.main(["--check"]) == 0


def test_subset_keeps_exactly_the_batch_operations() -> None:
    kept = {
        (path, method)
        for path, item in spec()["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert kept == {(path, method) for path, methods in OPERATIONS.items() for method in methods}


def test_subset_records_its_source_commit_and_licence() -> None:
    origin = spec()["info"]["x-derived-from"]
    assert origin["repository"] == "openai/openai-openapi"
    assert origin["commit"] == "f85dbe223d40e1a31cba812ab2d755c7e98a92a3"
    assert "MIT" in origin["licence"]
    header = DERIVED_SPEC.read_text(encoding="utf-8").split("\nopenapi:", 1)[0]
    assert "Copyright (c) OpenAI" in header
    assert "Permission is hereby granted, free of charge" in header


def test_every_reference_resolves_inside_the_subset() -> None:
    document = spec()
    refs = set(derive_spec._refs(document))
    assert refs, "the subset references no components at all"
    for ref in refs:
        _, _, section, name = ref.split("/")
        assert name in document["components"][section], f"dangling {ref}"


def test_requests_need_the_bearer_scheme() -> None:
    document = spec()
    assert document["security"] == [{"ApiKeyAuth": []}]
    assert document["components"]["securitySchemes"] == {
        "ApiKeyAuth": {"type": "http", "scheme": "bearer"}
    }


def test_everything_not_marked_as_added_is_upstream_verbatim() -> None:
    upstream = derive_spec.load_upstream(UPSTREAM_DIR)
    stripped = _without_additions(copy.deepcopy(spec()))

    for path, methods in OPERATIONS.items():
        for method in methods:
            assert stripped["paths"][path][method] == upstream["paths"][path][method], (
                f"{method} {path} differs from upstream beyond the marked additions"
            )
    for section, entries in stripped["components"].items():
        for name, value in entries.items():
            assert value == upstream["components"][section][name], f"{section}/{name} changed"


def _without_additions(node: Any) -> Any:
    """Undo each kind of marked addition: null branches, `limit` bounds, answers and headers."""
    if isinstance(node, list):
        return [_without_additions(value) for value in node]
    if not isinstance(node, dict):
        return node
    if node.get(ADDED) is True and "anyOf" in node:
        original, null = node["anyOf"]
        assert null == {"type": "null"}, f"unexpected wrapper {node}"
        return _without_additions(original)
    if node.get(ADDED) is True and "minimum" in node:
        node = {k: v for k, v in node.items() if k not in ("minimum", "maximum", ADDED)}
    result = {
        key: _without_additions(value) for key, value in node.items() if not _is_added_entry(value)
    }
    if result.get("headers") == {}:
        del result["headers"]
    return result


def _is_added_entry(value: Any) -> bool:
    """An added answer or header (dropped whole), as opposed to an amended schema."""
    return (
        isinstance(value, dict)
        and value.get(ADDED) is True
        and "anyOf" not in value
        and "minimum" not in value
    )


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/batches/{batch_id}/cancel", "post", {"200", "401", "404", "409", "429", "500"}),
        ("/batches/{batch_id}", "get", {"200", "401", "404", "429", "500"}),
        ("/batches", "get", {"200", "401", "429", "500"}),
        ("/batches", "post", {"200", "401", "429", "500"}),
    ],
)
def test_error_answers_are_added_and_marked(path: str, method: str, statuses: set[str]) -> None:
    responses = spec()["paths"][path][method]["responses"]
    assert set(responses) == statuses
    for status, answer in responses.items():
        assert (answer.get(ADDED) is True) == (status != "200"), f"{status} marking is wrong"
        assert "x-request-id" in answer["headers"]


def test_every_added_error_example_is_a_valid_error_response() -> None:
    examples = [
        (f"{method} {path} {status} {name}", example["value"])
        for path, item in spec()["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
        for status, answer in operation["responses"].items()
        if answer.get(ADDED)
        for name, example in answer["content"]["application/json"]["examples"].items()
    ]
    assert len(examples) >= 15
    for where, value in examples:
        assert violations("ErrorResponse", value) == [], where


def test_batch_fields_shown_null_in_upstream_examples_accept_null() -> None:
    batch = spec()["components"]["schemas"]["Batch"]["properties"]
    nullable = {name for name, prop in batch.items() if prop.get(ADDED)}
    assert {"cancelled_at", "cancelling_at", "output_file_id", "errors"} <= nullable
    assert not nullable & {"id", "status", "created_at"}  # required fields stay non-null


def test_list_limit_is_bounded_as_upstream_documents_it() -> None:
    (limit,) = [p for p in spec()["paths"]["/batches"]["get"]["parameters"] if p["name"] == "limit"]
    assert "between 1 and 100" in limit["description"]
    expected = {"minimum": 1, "maximum": 100, "default": 20, ADDED: True}
    assert limit["schema"].items() >= expected.items()
