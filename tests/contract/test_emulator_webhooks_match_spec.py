"""Every webhook body the emulator sends validates against the official spec's `webhooks:`
section (WebhookBatchCancelled and its siblings), read from the upstream document: the derived
Batch subset does not carry webhooks.

The upstream schemas allow unknown properties, so the key sets are compared separately."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from infra.contract.derive_spec import load_upstream
from infra.openai_emulator import OpenAIEmulator, WebhookSettings
from infra.openai_emulator.webhook_events import EVENT_TYPES, new_secret
from tests.infra.webhook_receiver import WebhookReceiver

UPSTREAM_URI = "urn:openai:openapi"


@cache
def _registry() -> Registry[Any]:
    resource = Resource.from_contents(load_upstream(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(UPSTREAM_URI, resource)
    return registry


def webhook_schema_ref(event_type: str) -> str:
    """The component the spec's `webhooks:` entry for this type points its request body at."""
    name = event_type.replace(".", "_")  # batch.cancelled -> batch_cancelled
    operation = load_upstream()["webhooks"][name]["post"]
    ref: str = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return ref


def violations(event_type: str, body: Any) -> list[str]:
    validator = Draft202012Validator(
        {"$ref": UPSTREAM_URI + webhook_schema_ref(event_type)}, registry=_registry()
    )
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(body)
    ]


def schema_properties(event_type: str) -> set[str]:
    name = webhook_schema_ref(event_type).rsplit("/", 1)[-1]
    return set(load_upstream()["components"]["schemas"][name]["properties"])


def test_the_spec_names_a_webhook_for_each_type_the_emulator_sends() -> None:
    batch_webhooks = {name for name in load_upstream()["webhooks"] if name.startswith("batch_")}
    assert {t.replace(".", "_") for t in EVENT_TYPES.values()} == batch_webhooks


@pytest.mark.parametrize("status", sorted(EVENT_TYPES))
def test_each_body_sent_validates_against_its_webhook_schema(status: str) -> None:
    with (
        WebhookReceiver() as receiver,
        OpenAIEmulator(
            cancel_delay_seconds=0.05,
            webhook_settings=WebhookSettings(url=receiver.url),
            webhook_secret=new_secret(),
        ) as emu,
    ):
        batch = emu.seed(status="in_progress")
        emu.finish(batch["id"], status)
        (received,) = receiver.wait_for(1)

    body = json.loads(received.body)
    event_type = EVENT_TYPES[status]
    assert violations(event_type, body) == []
    assert set(body) == schema_properties(event_type)  # every field, none the spec lacks
    assert set(body["data"]) == {"id"}
    assert body["type"] == event_type
    assert body["data"]["id"] == batch["id"]
    assert body["id"].startswith("evt_")
    assert received.headers["content-type"] == "application/json"


def test_a_body_breaking_the_schema_is_caught() -> None:
    bad = {"object": "event", "id": "evt_1", "type": "batch.completed", "created_at": "soon"}
    assert len(violations("batch.cancelled", bad)) >= 3  # wrong type, no data, bad created_at
