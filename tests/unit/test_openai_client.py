"""OpenAIBatchClient against the OpenAI emulator over real sockets: paths, headers, retries,
deadlines, key refresh and number handling. Sleeps are recorded, never slept."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import urllib3

from batch_canceller import __version__, openai_api
from batch_canceller.api_errors import TransientApiError
from batch_canceller.api_key import StaticApiKey
from batch_canceller.commands import InvalidInput
from batch_canceller.deadline import Deadline
from batch_canceller.openai_api import (
    ApiEndpoint,
    ApiResponse,
    OpenAIBatchClient,
)
from batch_canceller.retry_policy import RetryPolicy
from infra.openai_emulator import Fault, OpenAIEmulator
from tests.support import API_KEY

INVALID_IDS = ["../files", "a/b", "batch abc", "", "x" * 257, "batch_\u0430bc", "batch?x=1"]


class RecordingSleep:
    """Stands in for time.sleep: remembers every wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class RotatingKey:
    """An ApiKeySource whose refresh moves on to the next key, counting refreshes."""

    def __init__(self, *keys: str) -> None:
        self._next = list(keys)
        self.current = self._next.pop(0)
        self.refreshes = 0

    def get(self, *, refresh: bool = False) -> str:
        if refresh:
            self.refreshes += 1
            if self._next:
                self.current = self._next.pop(0)
        return self.current


class RequestIdRecordingPool(urllib3.PoolManager):
    """The client's pool, also keeping the `x-request-id` of every answer it received."""

    def __init__(self) -> None:
        super().__init__(num_pools=4, maxsize=4, block=True, retries=False)
        self.request_ids: list[str | None] = []

    def request(self, *args: Any, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        response = super().request(*args, **kwargs)
        self.request_ids.append(response.headers.get("x-request-id"))
        return response


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


def make_client(
    base_url: str,
    sleep: RecordingSleep,
    key: str = API_KEY,
    **endpoint: str,
) -> OpenAIBatchClient:
    return OpenAIBatchClient(
        ApiEndpoint(base_url=base_url, **endpoint),  # type: ignore[arg-type]
        StaticApiKey(key),
        OpenAIBatchClient.new_pool(4),
        sleep=sleep,
    )


@pytest.fixture
def client(emulator: OpenAIEmulator, sleep: RecordingSleep) -> OpenAIBatchClient:
    return make_client(emulator.base_url, sleep)


def roomy() -> Deadline:
    return Deadline.after(60.0)


# -- what is sent where --------------------------------------------------------------------


@pytest.mark.parametrize("batch_id", INVALID_IDS)
def test_invalid_batch_id_is_rejected_before_any_request(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, batch_id: str
) -> None:
    with pytest.raises(InvalidInput):
        client.cancel_batch(batch_id, roomy())
    with pytest.raises(InvalidInput):
        client.retrieve_batch(batch_id, roomy())
    assert emulator.requests == []


@pytest.mark.parametrize("cursor", ["cursor:abc/+=", "../files", "a b&after=x#y"])
def test_a_list_cursor_is_sent_as_given_and_stays_in_the_query(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, cursor: str
) -> None:
    # A gateway's cursor need not be a batch ID; encoded, it cannot change the path.
    client.list_batches(roomy(), after=cursor)

    [request] = emulator.requests
    assert request.path == "/v1/batches"
    assert request.query == {"limit": "100", "after": cursor}


def test_cancel_posts_to_the_batch_cancel_path(
    emulator: OpenAIEmulator, client: OpenAIBatchClient
) -> None:
    batch = emulator.seed(status="in_progress")

    answer = client.cancel_batch(batch["id"], roomy())

    assert answer.ok
    assert answer.body["status"] == "cancelling"
    [request] = emulator.requests
    assert request.method == "POST"
    assert request.path == f"/v1/batches/{batch['id']}/cancel"


def test_retrieve_gets_the_batch_path(emulator: OpenAIEmulator, client: OpenAIBatchClient) -> None:
    batch = emulator.seed(status="in_progress")

    answer = client.retrieve_batch(batch["id"], roomy())

    assert answer.body["id"] == batch["id"]
    [request] = emulator.requests
    assert request.method == "GET"
    assert request.path == f"/v1/batches/{batch['id']}"


def test_list_batches_sends_limit_and_after(
    emulator: OpenAIEmulator, client: OpenAIBatchClient
) -> None:
    emulator.seed_many(3)

    answer = client.list_batches(roomy(), after="batch_cursor", limit=2)

    assert answer.ok
    [request] = emulator.requests
    assert request.path == "/v1/batches"
    assert request.query == {"limit": "2", "after": "batch_cursor"}


def test_requests_carry_the_bearer_key_and_the_user_agent(
    emulator: OpenAIEmulator, client: OpenAIBatchClient
) -> None:
    batch = emulator.seed()

    client.retrieve_batch(batch["id"], roomy())

    [request] = emulator.requests
    assert request.header("authorization") == f"Bearer {API_KEY}"
    assert (request.header("user-agent") or "").startswith(f"batch-canceller/{__version__}")
    assert request.organization is None
    assert request.project is None


def test_organization_and_project_headers_are_sent_when_configured(
    emulator: OpenAIEmulator, sleep: RecordingSleep
) -> None:
    batch = emulator.seed()
    client = make_client(emulator.base_url, sleep, organization="org-42", project="proj_7")

    client.retrieve_batch(batch["id"], roomy())

    [request] = emulator.requests
    assert request.organization == "org-42"
    assert request.project == "proj_7"


def test_request_id_of_the_answer_is_captured(
    emulator: OpenAIEmulator, client: OpenAIBatchClient
) -> None:
    batch = emulator.seed()

    found = client.retrieve_batch(batch["id"], roomy())
    missing = client.retrieve_batch("batch_missing", roomy())

    assert re.fullmatch(r"req_[0-9a-f]{32}", found.request_id or "")
    assert re.fullmatch(r"req_[0-9a-f]{32}", missing.request_id or "")
    assert found.request_id != missing.request_id


# -- answers that are not retried ----------------------------------------------------------


def test_not_found_is_returned_with_the_openai_error_object(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep
) -> None:
    answer = client.cancel_batch("batch_missing", roomy())

    assert isinstance(answer, ApiResponse)
    assert answer.status == 404
    assert not answer.ok
    error = answer.error()
    assert error["type"] == "invalid_request_error"
    assert "batch_missing" in error["message"]
    assert len(emulator.requests) == 1
    assert sleep.waits == []


def test_cannot_cancel_conflict_is_returned_with_the_openai_error_object(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep
) -> None:
    batch = emulator.seed(status="completed")

    answer = client.cancel_batch(batch["id"], roomy())

    assert answer.status == 409
    assert answer.error()["message"] == "Cannot cancel a batch with status 'completed'."
    assert answer.error()["type"] == "invalid_request_error"
    assert len(emulator.requests) == 1
    assert sleep.waits == []


def test_error_answer_without_json_stands_in_a_generic_error_object(
    emulator: OpenAIEmulator, client: OpenAIBatchClient
) -> None:
    emulator.inject(Fault("html", status=404))

    answer = client.retrieve_batch("batch_x", roomy())

    assert answer.status == 404
    assert answer.body is None
    assert answer.error() == {"message": "HTTP 404", "type": None, "code": None}


# -- retries -------------------------------------------------------------------------------


def test_rate_limit_is_retried_after_the_retry_after_ms_hint(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep
) -> None:
    batch = emulator.seed()
    emulator.inject(Fault("status", status=429, retry_after_ms=250, retry_after=9))

    answer = client.cancel_batch(batch["id"], roomy())

    assert answer.ok
    assert sleep.waits == [0.25]
    assert [r.status for r in emulator.requests] == [429, 200]


def test_rate_limit_is_retried_after_the_retry_after_seconds_hint(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep
) -> None:
    batch = emulator.seed()
    emulator.inject(Fault("status", status=429, retry_after=2))

    answer = client.retrieve_batch(batch["id"], roomy())

    assert answer.ok
    assert sleep.waits == [2.0]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_after_a_bounded_backoff(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep, status: int
) -> None:
    batch = emulator.seed()
    emulator.inject(Fault("status", status=status))

    answer = client.cancel_batch(batch["id"], roomy())

    assert answer.ok
    assert [r.status for r in emulator.requests] == [status, 200]
    assert len(sleep.waits) == 1
    assert 0.0 <= sleep.waits[0] <= RetryPolicy().base_seconds


def test_html_bad_gateway_page_is_retried(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep
) -> None:
    batch = emulator.seed()
    emulator.inject(Fault("html"))

    answer = client.retrieve_batch(batch["id"], roomy())

    assert answer.ok
    assert len(sleep.waits) == 1


def test_reset_connection_is_retried(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep
) -> None:
    batch = emulator.seed()
    emulator.inject(Fault("reset"))

    answer = client.cancel_batch(batch["id"], roomy())

    assert answer.ok
    assert [r.status for r in emulator.requests] == [None, 200]
    assert len(sleep.waits) == 1


def test_dropped_connection_is_retried(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep
) -> None:
    batch = emulator.seed()
    emulator.inject(Fault("drop"))

    answer = client.retrieve_batch(batch["id"], roomy())

    assert answer.ok
    assert len(emulator.requests) == 2


def test_malformed_success_body_is_retried(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep
) -> None:
    batch = emulator.seed()
    emulator.inject(Fault("malformed"))

    answer = client.retrieve_batch(batch["id"], roomy())

    assert answer.ok
    assert answer.body["id"] == batch["id"]
    assert len(emulator.requests) == 2
    assert len(sleep.waits) == 1


def test_read_timeout_is_retried(
    emulator: OpenAIEmulator,
    client: OpenAIBatchClient,
    sleep: RecordingSleep,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a client that waits half a second for an answer, and one answer that takes longer
    monkeypatch.setattr(openai_api, "READ_TIMEOUT_SECONDS", 0.5)
    batch = emulator.seed()
    emulator.inject(Fault("delay", delay_seconds=3.0))

    # WHEN the batch is retrieved
    answer = client.retrieve_batch(batch["id"], roomy())

    # THEN the slow answer was abandoned and the request sent again
    assert answer.ok
    assert len(emulator.requests) == 2
    assert len(sleep.waits) == 1


def test_persistent_failure_gives_up_after_max_attempts_without_the_key(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep
) -> None:
    batch = emulator.seed()
    emulator.inject(Fault("status", status=500, times=None))

    with pytest.raises(TransientApiError) as caught:
        client.cancel_batch(batch["id"], roomy())

    attempts = RetryPolicy().max_attempts
    assert len(emulator.requests) == attempts
    assert len(sleep.waits) == attempts - 1
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)
    assert all(API_KEY not in str(arg) for arg in caught.value.args)


# -- what a transient failure carries -------------------------------------------------------


@pytest.fixture
def recording_pool() -> RequestIdRecordingPool:
    return RequestIdRecordingPool()


@pytest.fixture
def recorded_client(
    emulator: OpenAIEmulator, recording_pool: RequestIdRecordingPool, sleep: RecordingSleep
) -> OpenAIBatchClient:
    return OpenAIBatchClient(
        ApiEndpoint(base_url=emulator.base_url),
        StaticApiKey(API_KEY),
        recording_pool,
        sleep=sleep,
    )


def assert_no_key(error: TransientApiError) -> None:
    assert API_KEY not in str(error)
    assert API_KEY not in repr(error)
    assert all(API_KEY not in str(arg) for arg in error.args)


def test_giving_up_carries_the_status_and_request_id_of_the_last_answer(
    emulator: OpenAIEmulator,
    recorded_client: OpenAIBatchClient,
    recording_pool: RequestIdRecordingPool,
) -> None:
    # GIVEN an API that answers 500 every time
    batch = emulator.seed()
    emulator.inject(Fault("status", status=500, times=None))

    # WHEN the cancel is given up on
    with pytest.raises(TransientApiError) as caught:
        recorded_client.cancel_batch(batch["id"], roomy())

    # THEN the error names the last answer the emulator sent, as attributes and in its message
    error = caught.value
    attempts = RetryPolicy().max_attempts
    assert len(recording_pool.request_ids) == attempts
    last_request_id = recording_pool.request_ids[-1]
    assert re.fullmatch(r"req_[0-9a-f]{32}", last_request_id or "")
    assert error.status == 500
    assert error.request_id == last_request_id
    assert str(error) == f"cancel: HTTP 500 (request {last_request_id}) after {attempts} attempts"
    assert error.args == (str(error),)
    assert_no_key(error)


def test_a_retry_hint_past_the_deadline_carries_the_answer_that_gave_it(
    emulator: OpenAIEmulator,
    recorded_client: OpenAIBatchClient,
    recording_pool: RequestIdRecordingPool,
) -> None:
    batch = emulator.seed()
    emulator.inject(Fault("status", status=429, retry_after=30))

    with pytest.raises(TransientApiError) as caught:
        recorded_client.cancel_batch(batch["id"], Deadline(lambda: 8.0, reserve_seconds=5.0))

    [request_id] = recording_pool.request_ids
    error = caught.value
    assert error.status == 429
    assert error.request_id == request_id
    assert str(error) == (
        f"cancel: HTTP 429 (request {request_id}); retry in 30.0s would pass the deadline"
    )
    assert_no_key(error)


def test_a_malformed_success_body_carries_its_status_and_request_id(
    emulator: OpenAIEmulator,
    recorded_client: OpenAIBatchClient,
    recording_pool: RequestIdRecordingPool,
) -> None:
    batch = emulator.seed()
    emulator.inject(Fault("malformed", times=None))

    with pytest.raises(TransientApiError) as caught:
        recorded_client.retrieve_batch(batch["id"], roomy())

    error = caught.value
    attempts = RetryPolicy().max_attempts
    assert error.status == 200
    assert error.request_id == recording_pool.request_ids[-1]
    assert error.request_id is not None
    assert str(error) == f"retrieve: malformed JSON in HTTP 200 answer after {attempts} attempts"
    assert_no_key(error)


def test_failures_without_an_answer_carry_no_status_or_request_id(
    emulator: OpenAIEmulator, recorded_client: OpenAIBatchClient
) -> None:
    batch = emulator.seed()
    emulator.inject(Fault("reset", times=None))

    with pytest.raises(TransientApiError) as reset:
        recorded_client.cancel_batch(batch["id"], roomy())
    with pytest.raises(TransientApiError) as no_time:
        recorded_client.cancel_batch(batch["id"], Deadline(lambda: 5.5, reserve_seconds=5.0))

    assert (reset.value.status, reset.value.request_id) == (None, None)
    assert str(reset.value).startswith("cancel: ")
    assert str(reset.value).endswith(f"after {RetryPolicy().max_attempts} attempts")
    assert (no_time.value.status, no_time.value.request_id) == (None, None)
    assert str(no_time.value) == "cancel: no time left in this invocation"


def test_retry_hint_past_the_deadline_fails_at_once_without_sleeping(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep
) -> None:
    # GIVEN about 3 s of usable time and a server asking for 30 s
    deadline = Deadline(lambda: 8.0, reserve_seconds=5.0)
    batch = emulator.seed()
    emulator.inject(Fault("status", status=429, retry_after=30))

    # WHEN the cancel is attempted THEN it fails now instead of sleeping past the deadline
    with pytest.raises(TransientApiError):
        client.cancel_batch(batch["id"], deadline)
    assert sleep.waits == []
    assert len(emulator.requests) == 1


def test_retry_hint_beyond_the_longest_wait_is_not_waited_for(
    emulator: OpenAIEmulator, client: OpenAIBatchClient, sleep: RecordingSleep
) -> None:
    batch = emulator.seed()
    emulator.inject(
        Fault("status", status=503, retry_after=RetryPolicy().max_retry_after_seconds + 60)
    )

    with pytest.raises(TransientApiError):
        client.cancel_batch(batch["id"], Deadline.after(900.0))
    assert sleep.waits == []


def test_no_request_starts_when_the_deadline_leaves_no_time(
    emulator: OpenAIEmulator, client: OpenAIBatchClient
) -> None:
    batch = emulator.seed()

    with pytest.raises(TransientApiError):
        client.cancel_batch(batch["id"], Deadline(lambda: 5.5, reserve_seconds=5.0))
    assert emulator.requests == []


# -- credentials ---------------------------------------------------------------------------


@pytest.fixture
def rotating_emulator() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(api_keys={"sk-old-key-000000"}, cancel_delay_seconds=60) as emu:
        yield emu


def rotating_client(
    emu: OpenAIEmulator, key: RotatingKey, sleep: RecordingSleep
) -> OpenAIBatchClient:
    return OpenAIBatchClient(
        ApiEndpoint(base_url=emu.base_url), key, OpenAIBatchClient.new_pool(4), sleep=sleep
    )


def test_unauthorized_answer_refreshes_the_key_once_and_retries(
    rotating_emulator: OpenAIEmulator, sleep: RecordingSleep
) -> None:
    # GIVEN a key that was rotated after the function cached it
    key = RotatingKey("sk-old-key-000000", "sk-new-key-111111")
    client = rotating_client(rotating_emulator, key, sleep)
    batch = rotating_emulator.seed()
    rotating_emulator.set_api_keys({"sk-new-key-111111"})

    # WHEN a cancel is sent
    answer = client.cancel_batch(batch["id"], roomy())

    # THEN the key was fetched again exactly once and the retry with it succeeded
    assert answer.ok
    assert key.refreshes == 1
    assert [r.status for r in rotating_emulator.requests] == [401, 200]
    assert rotating_emulator.requests[1].header("authorization") == "Bearer sk-new-key-111111"
    assert sleep.waits == []


def test_unauthorized_with_the_refreshed_key_too_is_returned_after_one_refresh(
    rotating_emulator: OpenAIEmulator, sleep: RecordingSleep
) -> None:
    key = RotatingKey("sk-bad-key-000000", "sk-bad-key-111111", "sk-bad-key-222222")
    client = rotating_client(rotating_emulator, key, sleep)
    batch = rotating_emulator.seed()

    answer = client.cancel_batch(batch["id"], roomy())

    assert answer.status == 401
    assert key.refreshes == 1
    assert [r.status for r in rotating_emulator.requests] == [401, 401]


def test_key_refresh_is_rate_limited(
    rotating_emulator: OpenAIEmulator, sleep: RecordingSleep, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a client that refreshes the key at most once an hour, after one refresh
    monkeypatch.setattr(openai_api, "KEY_REFRESH_INTERVAL_SECONDS", 3600.0)
    key = RotatingKey("sk-old-key-000000", "sk-new-key-111111", "sk-newer-key-2222")
    client = rotating_client(rotating_emulator, key, sleep)
    batch = rotating_emulator.seed()
    rotating_emulator.set_api_keys({"sk-new-key-111111"})
    assert client.retrieve_batch(batch["id"], roomy()).ok
    assert key.refreshes == 1

    # WHEN the key is rotated again within the hour
    rotating_emulator.set_api_keys({"sk-newer-key-2222"})
    answer = client.retrieve_batch(batch["id"], roomy())

    # THEN no second refresh happens and the 401 is returned
    assert answer.status == 401
    assert key.refreshes == 1

    # AND once the interval has passed, the next 401 refreshes again
    monkeypatch.setattr(openai_api, "KEY_REFRESH_INTERVAL_SECONDS", 0.0)
    assert client.retrieve_batch(batch["id"], roomy()).ok
    assert key.refreshes == 2


# -- numbers and other API styles ----------------------------------------------------------


def test_floats_in_a_batch_come_back_as_decimals(
    emulator: OpenAIEmulator, client: OpenAIBatchClient
) -> None:
    batch = emulator.seed(score=0.1, nested=[[1, 2.5e-7], {"x": None}], big=2**63 + 1)

    body = client.retrieve_batch(batch["id"], roomy()).body

    assert body["score"] == Decimal("0.1")
    assert isinstance(body["score"], Decimal)
    assert body["nested"] == [[1, Decimal("2.5e-7")], {"x": None}]
    assert isinstance(body["nested"][0][1], Decimal)
    assert isinstance(body["nested"][0][0], int)
    assert body["big"] == 2**63 + 1
    assert body["created_at"] == batch["created_at"]
    assert isinstance(body["created_at"], int)


def test_azure_classic_sends_the_api_key_header_and_api_version(sleep: RecordingSleep) -> None:
    with OpenAIEmulator(api_keys={API_KEY}, path_prefix="/openai", api_style="azure") as emu:
        batch = emu.seed()
        client = OpenAIBatchClient(
            ApiEndpoint(base_url=emu.base_url, style="azure", azure_api_version="2024-10-21"),
            StaticApiKey(API_KEY),
            OpenAIBatchClient.new_pool(4),
            sleep=sleep,
        )

        answer = client.cancel_batch(batch["id"], roomy())
        listed = client.list_batches(roomy(), limit=5)

        assert answer.ok
        assert listed.ok
        cancel, listing = emu.requests
        assert cancel.path == f"/openai/batches/{batch['id']}/cancel"
        assert cancel.query == {"api-version": "2024-10-21"}
        assert cancel.header("api-key") == API_KEY
        assert cancel.header("authorization") is None
        assert listing.query == {"limit": "5", "api-version": "2024-10-21"}


def test_azure_v1_sends_the_api_key_header_without_api_version(sleep: RecordingSleep) -> None:
    with OpenAIEmulator(api_keys={API_KEY}, path_prefix="/openai/v1", api_style="azure") as emu:
        batch = emu.seed()
        client = OpenAIBatchClient(
            ApiEndpoint(base_url=emu.base_url, style="azure"),
            StaticApiKey(API_KEY),
            OpenAIBatchClient.new_pool(4),
            sleep=sleep,
        )

        answer = client.retrieve_batch(batch["id"], roomy())

        assert answer.ok
        [request] = emu.requests
        assert request.query == {}
        assert request.header("api-key") == API_KEY
        assert request.header("authorization") is None
