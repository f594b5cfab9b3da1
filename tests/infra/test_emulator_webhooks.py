"""The emulator's webhooks, received by a real HTTP endpoint and verified with the `openai` SDK:
signed deliveries for every terminal status change, retries, and each injected fault."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from openai import InvalidWebhookSignatureError, OpenAI

from infra.openai_emulator import OpenAIEmulator, WebhookFault, WebhookSettings
from infra.openai_emulator.webhook_events import new_secret
from tests.infra.webhook_receiver import Received, WebhookReceiver

KEY = "sk-webhooks"
SECRET = new_secret()
FAST = {"initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.2, "timeout_seconds": 2.0}


def verified(received: Received, secret: str = SECRET) -> Any:
    """The event as the SDK unwraps it; raises InvalidWebhookSignatureError when it does not."""
    client = OpenAI(api_key="x", webhook_secret=secret)
    return client.webhooks.unwrap(received.body, received.headers)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as endpoint:
        yield endpoint


def emulator_for(url: str, **settings: Any) -> OpenAIEmulator:
    return OpenAIEmulator(
        api_keys={KEY},
        cancel_delay_seconds=0.1,
        webhook_settings=WebhookSettings(url=url, **{**FAST, **settings}),
        webhook_secret=SECRET,
    )


@pytest.fixture
def emu(receiver: WebhookReceiver) -> Iterator[OpenAIEmulator]:
    with emulator_for(receiver.url) as emulator:
        yield emulator


def cancel(emu: OpenAIEmulator, batch_id: str) -> None:
    http = urllib3.PoolManager(retries=False)
    answer = http.request(
        "POST",
        f"{emu.base_url}/batches/{batch_id}/cancel",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert answer.status == 200


def test_a_cancel_is_announced_by_a_signed_webhook_without_anyone_reading_the_batch(
    emu: OpenAIEmulator, receiver: WebhookReceiver
) -> None:
    batch = emu.seed(status="in_progress")
    cancel(emu, batch["id"])

    (received,) = receiver.wait_for(1)
    event = verified(received)
    assert event.type == "batch.cancelled"
    assert event.data.id == batch["id"]
    assert received.path == "/hooks/openai"
    assert received.headers["webhook-id"].startswith("msg_")
    assert emu.webhooks.wait_idle(5)
    (delivery,) = emu.webhooks.deliveries(batch["id"])
    assert delivery["state"] == "delivered"
    assert delivery["webhook_id"] == received.webhook_id
    assert json.loads(delivery["body"])["created_at"] == int(delivery["changed_at"])
    assert delivery["changed_at"] <= delivery["attempts"][0]["started_at"]
    assert [a["status"] for a in delivery["attempts"]] == [200]


@pytest.mark.parametrize("status", ["completed", "failed", "expired", "cancelled"])
def test_every_terminal_status_change_sends_its_event_type(
    emu: OpenAIEmulator, receiver: WebhookReceiver, status: str
) -> None:
    batch = emu.seed(status="in_progress")
    emu.finish(batch["id"], status)

    (received,) = receiver.wait_for(1)
    assert verified(received).type == f"batch.{status}"


def test_seeding_a_terminal_batch_is_not_a_state_change(
    emu: OpenAIEmulator, receiver: WebhookReceiver
) -> None:
    emu.seed(status="completed")
    emu.finish(emu.seed(status="in_progress")["id"], "failed")

    assert emu.webhooks.wait_idle(5)
    assert [d["type"] for d in emu.webhooks.deliveries()] == ["batch.failed"]


def test_failed_attempts_are_retried_with_the_same_webhook_id_until_a_2xx() -> None:
    with WebhookReceiver(500, 503, 200) as receiver, emulator_for(receiver.url) as emu:
        batch = emu.seed(status="in_progress")
        emu.finish(batch["id"], "completed")
        assert emu.webhooks.wait_idle(10)

        received = receiver.received
        assert len(received) == 3
        assert len({r.webhook_id for r in received}) == 1
        assert all(verified(r).data.id == batch["id"] for r in received)
        (delivery,) = emu.webhooks.deliveries()
        assert [a["status"] for a in delivery["attempts"]] == [500, 503, 200]
        assert delivery["state"] == "delivered"
        gaps = [
            b["started_at"] - a["ended_at"]
            for a, b in zip(delivery["attempts"], delivery["attempts"][1:], strict=False)
        ]
        assert gaps[0] >= 0.05
        assert gaps[1] >= 0.1  # the backoff doubled


def test_an_endpoint_that_does_not_answer_in_time_gets_another_attempt() -> None:
    with (
        WebhookReceiver((200, 1.5)) as receiver,
        emulator_for(receiver.url, timeout_seconds=0.3) as emu,
    ):
        emu.finish(emu.seed(status="in_progress")["id"], "expired")
        assert emu.webhooks.wait_idle(10)

        (delivery,) = emu.webhooks.deliveries()
        assert [(a["status"], a["error"]) for a in delivery["attempts"]] == [
            (None, "timeout"),
            (200, None),
        ]


def test_attempts_stop_at_max_attempts() -> None:
    with (
        WebhookReceiver(*[500] * 10) as receiver,
        emulator_for(receiver.url, max_attempts=3) as emu,
    ):
        emu.finish(emu.seed(status="in_progress")["id"], "failed")
        assert emu.webhooks.wait_idle(10)

        (delivery,) = emu.webhooks.deliveries()
        assert delivery["state"] == "failed"
        assert len(delivery["attempts"]) == 3
        assert len(receiver.received) == 3


def test_an_endpoint_refusing_connections_is_retried_then_given_up() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    with emulator_for(f"http://127.0.0.1:{port}/", max_attempts=2) as emu:
        emu.finish(emu.seed(status="in_progress")["id"], "failed")
        assert emu.webhooks.wait_idle(10)
        (delivery,) = emu.webhooks.deliveries()
        assert [a["error"] for a in delivery["attempts"]] == ["connection refused"] * 2


def test_no_url_no_deliveries() -> None:
    with OpenAIEmulator(api_keys={KEY}) as emu:
        emu.finish(emu.seed(status="in_progress")["id"], "completed")
        assert emu.webhooks.deliveries() == []


# -- faults ---------------------------------------------------------------------------------


def test_wrong_signature_fails_verification(emu: OpenAIEmulator, receiver: WebhookReceiver) -> None:
    emu.webhooks.configure({"max_attempts": 1})
    emu.webhooks.faults.add(WebhookFault("wrong_signature"))
    emu.finish(emu.seed(status="in_progress")["id"], "cancelled")

    (received,) = receiver.wait_for(1)
    with pytest.raises(InvalidWebhookSignatureError):
        verified(received)
    assert emu.webhooks.faults.counts() == {"wrong_signature": 1}


def test_never_sent_sends_nothing(emu: OpenAIEmulator, receiver: WebhookReceiver) -> None:
    emu.webhooks.faults.add(WebhookFault("never_sent"))
    first = emu.seed(status="in_progress")["id"]
    emu.finish(first, "cancelled")
    second = emu.seed(status="in_progress")["id"]
    emu.finish(second, "cancelled")

    (received,) = receiver.wait_for(1)  # only the second: the fault fired once
    assert verified(received).data.id == second
    assert emu.webhooks.wait_idle(5)
    states = {d["batch_id"]: (d["state"], d["attempts"]) for d in emu.webhooks.deliveries()}
    assert states[first] == ("dropped", [])


def test_duplicate_sends_the_same_webhook_id_and_body_twice(
    emu: OpenAIEmulator, receiver: WebhookReceiver
) -> None:
    emu.webhooks.faults.add(WebhookFault("duplicate", delay_ms=50))
    emu.finish(emu.seed(status="in_progress")["id"], "cancelled")

    first, second = receiver.wait_for(2)
    assert first.webhook_id == second.webhook_id
    assert first.body == second.body
    assert verified(first).id == verified(second).id
    assert emu.webhooks.wait_idle(5)
    assert [d["duplicate"] for d in emu.webhooks.deliveries()] == [False, True]


def test_out_of_order_sends_the_next_delivery_first(
    emu: OpenAIEmulator, receiver: WebhookReceiver
) -> None:
    emu.webhooks.faults.add(WebhookFault("out_of_order"))
    early, late = emu.seed(status="in_progress")["id"], emu.seed(status="in_progress")["id"]
    emu.finish(early, "completed")
    assert [d["state"] for d in emu.webhooks.deliveries()] == ["held"]
    emu.finish(late, "cancelled")

    first, second = receiver.wait_for(2)
    assert [verified(first).data.id, verified(second).data.id] == [late, early]


def test_a_held_delivery_goes_out_alone_after_hold_seconds(receiver: WebhookReceiver) -> None:
    with emulator_for(receiver.url, hold_seconds=0.2) as emu:
        emu.webhooks.faults.add(WebhookFault("out_of_order"))
        emu.finish(emu.seed(status="in_progress")["id"], "completed")
        (received,) = receiver.wait_for(1)
        assert verified(received).type == "batch.completed"


def test_delay_holds_the_first_attempt_back(emu: OpenAIEmulator, receiver: WebhookReceiver) -> None:
    emu.webhooks.faults.add(WebhookFault("delay", delay_ms=300))
    emu.finish(emu.seed(status="in_progress")["id"], "cancelled")

    receiver.wait_for(1)
    assert emu.webhooks.wait_idle(5)
    (delivery,) = emu.webhooks.deliveries()
    assert delivery["attempts"][0]["started_at"] - delivery["queued_at"] >= 0.3


def test_a_fault_with_probability_fires_on_some_deliveries_reproducibly(
    emu: OpenAIEmulator, receiver: WebhookReceiver
) -> None:
    emu.webhooks.faults.add(WebhookFault("never_sent", times=None, probability=0.5, seed=7))
    for _ in range(20):
        emu.finish(emu.seed(status="in_progress")["id"], "completed")
    assert emu.webhooks.wait_idle(10)

    dropped = emu.webhooks.faults.counts()["never_sent"]
    assert 0 < dropped < 20
    assert len(receiver.received) == 20 - dropped


# -- control routes --------------------------------------------------------------------------


def control(emu: OpenAIEmulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    answer = urllib3.PoolManager(retries=False).request(
        method, f"{emu.url}/_emulator{path}", body=None if body is None else json.dumps(body)
    )
    return answer.status, json.loads(answer.data) if answer.data else None


def test_control_routes_configure_inject_finish_and_read_the_log(receiver: WebhookReceiver) -> None:
    with OpenAIEmulator(api_keys={KEY}) as emu:
        status, config = control(
            emu, "POST", "/webhooks", {"url": receiver.url, "secret": SECRET, "max_attempts": 2}
        )
        assert status == 200
        assert config["url"] == receiver.url
        assert config["max_attempts"] == 2
        assert config["secret_set"] is True
        assert SECRET not in json.dumps(config)
        assert control(emu, "POST", "/webhooks/faults", {"kind": "duplicate"})[0] == 204
        assert control(emu, "GET", "/webhooks/faults")[1]["armed"][0]["kind"] == "duplicate"
        batch = emu.seed(status="in_progress")["id"]

        status, finished = control(emu, "POST", f"/batches/{batch}/finish", {"status": "completed"})
        assert (status, finished["status"]) == (200, "completed")
        receiver.wait_for(2)
        assert emu.webhooks.wait_idle(5)
        status, log = control(emu, "GET", f"/webhooks/deliveries?batch_id={batch}")
        assert status == 200
        assert [d["state"] for d in log] == ["delivered", "delivered"]
        assert control(emu, "GET", "/webhooks/deliveries?batch_id=batch_other")[1] == []
        assert control(emu, "DELETE", "/webhooks/deliveries")[0] == 204
        assert control(emu, "GET", "/webhooks/deliveries")[1] == []
        assert control(emu, "POST", f"/batches/{batch}/finish", {"status": "failed"})[0] == 409


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/"},
        {"secret": "not-a-whsec"},
        {"max_attempts": 0},
        {"colour": "blue"},
    ],
)
def test_control_rejects_bad_webhook_settings(body: dict[str, Any]) -> None:
    with OpenAIEmulator(api_keys={KEY}, webhook_secret=SECRET) as emu:
        assert control(emu, "POST", "/webhooks", body)[0] == 400


def test_a_url_without_a_secret_is_refused() -> None:
    with OpenAIEmulator(api_keys={KEY}) as emu:
        assert control(emu, "POST", "/webhooks", {"url": "http://127.0.0.1:9/"})[0] == 400


def test_a_slow_endpoint_never_holds_up_the_api() -> None:
    with WebhookReceiver((200, 2.0)) as receiver, emulator_for(receiver.url) as emu:
        batch = emu.seed(status="in_progress")
        emu.finish(batch["id"], "completed")
        http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1.0, read=1.0))

        answer = http.request(
            "GET",
            f"{emu.base_url}/batches/{batch['id']}",
            headers={"Authorization": f"Bearer {KEY}"},
        )

        assert (answer.status, json.loads(answer.data)["status"]) == (200, "completed")
        (delivery,) = emu.webhooks.deliveries()
        assert delivery["state"] == "pending"  # its attempt is still out
        assert emu.webhooks.wait_idle(10)
