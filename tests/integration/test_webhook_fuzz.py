"""A fuzz of the receiver's headers and bodies through its real handler, on moto: missing,
junk and non-string headers, the same name in two cases, huge bodies, non-UTF-8, base64
garbage, isBase64Encoded that lies. It never answers 5xx and never queues anything for a
request the test did not sign with the secret; `-s` prints what it covered."""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_canceller.webhook_request import MAX_BODY_BYTES
from batch_canceller.webhook_signature import HEADERS
from tests.integration.test_webhook_receiver import Receiver, receiver  # noqa: F401 - fixture
from tests.webhook_support import EVENT_TYPES, event_body, signed_headers, url_event

JUNK = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=4), max_size=2),
    st.binary(max_size=8),
)
BATCH_EVENTS = st.builds(
    event_body,
    st.sampled_from([*EVENT_TYPES, "response.completed"]),
    st.one_of(st.just("batch_abc123"), st.text(max_size=20)),
)
RAW_BODIES = st.one_of(
    BATCH_EVENTS,
    BATCH_EVENTS,
    BATCH_EVENTS,
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.just(b"x" * (MAX_BODY_BYTES + 1)),
    st.just(event_body(padding="y" * MAX_BODY_BYTES)),
)
# How the body is put in the event: as Lambda would, or not as Lambda ever would.
DELIVERY = st.sampled_from(["as_lambda", "as_lambda", "base64", "garbage_base64", "junk"])
HEADER_CHANGE = st.sampled_from(["keep"] * 8 + ["drop", "junk", "other_case", "twice"])
CASES = (str.title, str.upper, lambda name: name.replace("webhook", "Webhook"))

seen: Counter[str] = Counter()


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A payload-2.0 event, and the webhook-id the test signed it under (None: not signed)."""
    raw = draw(RAW_BODIES)
    sign = draw(st.sampled_from([True, True, False]))
    webhook_id = "wh_" + uuid.uuid4().hex
    headers: dict[str, Any] = signed_headers(raw, webhook_id=webhook_id)
    if not sign:
        headers["webhook-signature"] = draw(
            st.one_of(st.text(max_size=60), st.just("v1,AAAA"), st.just(""))
        )
    changed = False
    for name in HEADERS:
        change = draw(HEADER_CHANGE)
        seen[f"header {change}"] += 1
        if change == "keep":
            continue
        value = headers.pop(name)
        if change == "junk":
            headers[name] = draw(JUNK)
        elif change == "other_case":  # names are case-insensitive: the signature stands
            headers[draw(st.sampled_from(CASES))(name)] = value
        elif change == "twice":
            headers[name] = value
            headers[draw(st.sampled_from(CASES))(name)] = second = draw(
                st.one_of(st.just(value), JUNK)
            )
            changed |= second != value
            continue
        changed |= change != "other_case"
    event = url_event(raw, headers, method=draw(st.sampled_from(["POST"] * 4 + ["GET", "PUT"])))
    delivery = draw(DELIVERY)
    seen[f"body {delivery}"] += 1
    if delivery == "base64":
        event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    elif delivery == "garbage_base64":
        event["body"] = draw(st.text(max_size=80))
        event["isBase64Encoded"] = True
    elif delivery == "junk":
        event[draw(st.sampled_from(["body", "isBase64Encoded", "headers", "requestContext"]))] = (
            draw(JUNK)
        )
    # Only a request whose signature still stands can be queued; the others never.
    return event, (webhook_id if sign and not changed else None)


@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_no_request_gets_a_5xx_and_only_signed_ones_are_queued(
    receiver: Receiver,  # noqa: F811 - the fixture
    request: tuple[dict[str, Any], str | None],
) -> None:
    event, signed_as = request
    answer = receiver(event)
    status = answer["statusCode"]
    seen[f"status {status}"] += 1
    assert status in {200, 400, 401, 405, 413}, answer
    assert json.loads(answer["body"]) in (
        {"status": "received"},
        *({"error": e} for e in ("bad_request", "unauthorized", "method_not_allowed")),
        {"error": "payload_too_large"},
    )
    queued = receiver.queued()
    if signed_as is None:
        assert status != 200
        assert queued == []
    else:
        assert [message["webhook"]["delivery_id"] for message in queued] in ([], [signed_as])
        if queued:
            seen["queued"] += 1
            assert status == 200


def test_the_fuzz_reached_every_answer() -> None:
    # Runs after the fuzz in file order (alone, it has nothing to check); `-s` prints it.
    print(dict(sorted(seen.items())))
    if seen:
        assert {f"status {s}" for s in (200, 400, 401, 405, 413)} <= set(seen)
        assert seen["queued"] > 0
