"""The receiver's verifier agrees with the `openai` SDK (`client.webhooks.unwrap`) and with
`standardwebhooks` on what OpenAI sends and on the attacks the contract names; where it is
stricter than them, the difference is stated and pinned."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pytest
import standardwebhooks
from openai import OpenAI

from batch_canceller.webhook_signature import Verdict, WebhookKey, sign, verify
from tests.support import ROTATED_WEBHOOK_SECRET, WEBHOOK_SECRET
from tests.webhook_support import event_body, signed_headers

KEY = WebhookKey.from_secret(WEBHOOK_SECRET)
NOW = int(time.time())


def now() -> int:
    """The time a case is built at: cases are built when a test runs, not when collected."""
    return int(time.time())


BODY = event_body()
Case = tuple[bytes, dict[str, str]]


def ours(body: bytes, headers: dict[str, str]) -> bool:
    return verify(headers, body, [KEY], time.time()) is Verdict.VALID


def openai_sdk(body: bytes, headers: dict[str, str]) -> bool:
    client = OpenAI(api_key="x", webhook_secret=WEBHOOK_SECRET)
    try:
        client.webhooks.unwrap(body.decode(), headers)
    except Exception:
        return False
    return True


def standard_webhooks(body: bytes, headers: dict[str, str]) -> bool:
    try:
        standardwebhooks.Webhook(WEBHOOK_SECRET).verify(body, headers)
    except Exception:
        return False
    return True


def with_(headers: dict[str, str], **changes: str | None) -> dict[str, str]:
    changed = {**headers}
    for name, value in changes.items():
        header = "webhook-" + name
        if value is None:
            changed.pop(header)
        else:
            changed[header] = value
    return changed


def valid() -> Case:
    return BODY, signed_headers(BODY)


def tampered_body() -> Case:
    return BODY.replace(b"batch_abc123", b"batch_abc124"), signed_headers(BODY)


def wrong_secret() -> Case:
    return BODY, signed_headers(BODY, ROTATED_WEBHOOK_SECRET)


def stale() -> Case:
    return BODY, signed_headers(BODY, timestamp=now() - 301)


def future() -> Case:
    return BODY, signed_headers(BODY, timestamp=now() + 360)


def several_one_valid() -> Case:
    timestamp = now()
    headers = signed_headers(BODY, webhook_id="wh_1", timestamp=timestamp)
    other = sign(WebhookKey.from_secret(ROTATED_WEBHOOK_SECRET), "wh_1", timestamp, BODY)
    return BODY, with_(headers, signature=f"{other} {headers['webhook-signature']}")


def several_none_valid() -> Case:
    headers = signed_headers(BODY, ROTATED_WEBHOOK_SECRET)
    return BODY, with_(headers, signature=f"{headers['webhook-signature']} v1,AAAA")


def wrong_version_prefix() -> Case:
    headers = signed_headers(BODY)
    return BODY, with_(headers, signature=headers["webhook-signature"].replace("v1,", "v2,"))


def another_id_signed() -> Case:
    headers = signed_headers(BODY, webhook_id="wh_signed")
    return BODY, with_(headers, id="wh_sent")


def another_timestamp_signed() -> Case:
    timestamp = now()
    headers = signed_headers(BODY, timestamp=timestamp)
    return BODY, with_(headers, timestamp=str(timestamp - 1))


def missing(name: str) -> Callable[[], Case]:
    def case() -> Case:
        return BODY, with_(signed_headers(BODY), **{name: None})

    case.__name__ = f"missing_{name}"
    return case


CASES: dict[Callable[[], Case], bool] = {
    valid: True,
    several_one_valid: True,
    tampered_body: False,
    wrong_secret: False,
    stale: False,
    future: False,
    several_none_valid: False,
    wrong_version_prefix: False,
    another_id_signed: False,
    another_timestamp_signed: False,
    missing("id"): False,
    missing("timestamp"): False,
    missing("signature"): False,
}


@pytest.mark.parametrize("case", list(CASES), ids=lambda case: case.__name__)
def test_the_verifier_agrees_with_the_openai_sdk_and_standard_webhooks(
    case: Callable[[], Case],
) -> None:
    body, headers = case()
    expected = CASES[case]
    assert ours(body, headers) is expected
    assert openai_sdk(body, headers) is expected
    assert standard_webhooks(body, headers) is expected


def test_the_verdicts_say_why() -> None:
    assert verify(stale()[1], BODY, [KEY], time.time()) is Verdict.STALE
    assert verify(future()[1], BODY, [KEY], time.time()) is Verdict.STALE
    assert verify(wrong_secret()[1], BODY, [KEY], time.time()) is Verdict.MISMATCH
    assert verify(missing("id")()[1], BODY, [KEY], time.time()) is Verdict.MISSING
    assert verify(with_(valid()[1], id=""), BODY, [KEY], time.time()) is Verdict.MISSING


def test_exactly_300_seconds_off_is_accepted_either_way_like_the_sdk() -> None:
    for offset in (-300, 300):
        headers = signed_headers(BODY, timestamp=NOW + offset)
        assert verify(headers, BODY, [KEY], NOW) is Verdict.VALID
    for offset in (-301, 301):
        headers = signed_headers(BODY, timestamp=NOW + offset)
        assert verify(headers, BODY, [KEY], NOW) is Verdict.STALE


def test_the_body_is_signed_as_the_bytes_received_even_when_not_utf8() -> None:
    # The SDK and standardwebhooks decode the body as UTF-8 first and raise on this one.
    body = b"\xff\xfe not utf-8"
    headers = signed_headers(body)
    assert verify(headers, body, [KEY], time.time()) is Verdict.VALID
    with pytest.raises(UnicodeDecodeError):
        standardwebhooks.Webhook(WEBHOOK_SECRET).verify(body, headers)


def test_a_malformed_signature_value_does_not_hide_a_valid_one() -> None:
    # standardwebhooks raises ValueError at `garbage` and never reaches the valid value.
    body, headers = valid()
    for junk in ("garbage", "v1,not base64!", "v1,a,b", ","):
        mixed = with_(headers, signature=f"{junk} {headers['webhook-signature']}")
        assert verify(mixed, body, [KEY], time.time()) is Verdict.VALID, junk
    with pytest.raises(ValueError):
        standardwebhooks.Webhook(WEBHOOK_SECRET).verify(
            body, with_(headers, signature=f"garbage {headers['webhook-signature']}")
        )


def test_stricter_than_the_sdk_a_bare_signature_without_its_version_is_refused() -> None:
    # The SDK accepts a value without `v1,`; Standard Webhooks (and this verifier) do not.
    body, headers = valid()
    bare = with_(headers, signature=headers["webhook-signature"].removeprefix("v1,"))
    assert openai_sdk(body, bare) is True
    assert standard_webhooks(body, bare) is False
    assert verify(bare, body, [KEY], time.time()) is Verdict.MISMATCH


@pytest.mark.parametrize("timestamp", ["1.7e9", f"{NOW}.0", f"+{NOW}", f" {NOW}", f"{NOW}_0"])
def test_stricter_than_both_a_timestamp_that_is_not_plain_digits_is_malformed(
    timestamp: str,
) -> None:
    # standardwebhooks reads such a header as a float and signs the digits it re-formats;
    # the SDK's int() accepts signs, spaces and underscores. Here: digits only.
    body, headers = valid()
    assert verify(with_(headers, timestamp=timestamp), body, [KEY], time.time()) is (
        Verdict.MALFORMED
    )


def test_a_key_from_a_secret_without_padding_is_the_same_key() -> None:
    unpadded = WEBHOOK_SECRET.rstrip("=")
    assert WebhookKey.from_secret(unpadded) == KEY


@pytest.mark.parametrize(
    "secret", ["", "whsec_", "sk-not-a-webhook-secret", "whsec_***notbase64***", "whsec_Q"]
)
def test_a_secret_that_is_not_whsec_base64_is_refused_without_quoting_it(secret: str) -> None:
    with pytest.raises(ValueError) as raised:
        WebhookKey.from_secret(secret)
    if secret.removeprefix("whsec_"):
        assert secret.removeprefix("whsec_") not in str(raised.value)


def test_a_key_shows_nothing_of_itself() -> None:
    assert repr(KEY) == "WebhookKey(<hidden>)"
    assert base64.b64encode(b"wh-s1gn1ng").decode() not in repr(KEY)
