"""The real OpenAIBatchClient against Prism serving the derived spec: every request the client
makes must pass Prism's validation, and every answer the spec allows must be read correctly.

Prism answers a request that breaks the spec with 422 problem+json (see infra/contract/prism.py),
so "accepted" below means a 2xx whose body validates against the spec's schema."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import urllib3

from batch_canceller.api_errors import TransientApiError
from batch_canceller.api_key import StaticApiKey
from batch_canceller.deadline import Deadline
from batch_canceller.openai_api import (
    USER_AGENT,
    ApiEndpoint,
    ApiResponse,
    OpenAIBatchClient,
)
from batch_canceller.retry_policy import RetryPolicy
from batch_canceller.work import says_cannot_cancel
from infra.contract.derive_spec import DERIVED_SPEC
from infra.contract.prism import PrismServer
from tests.contract.fixtures import example_names, example_value, response_schema_name, violations

KEY = "sk-contract-" + "c0n" * 8
BATCH_ID = "batch_abc123"
CANCEL = "/batches/{batch_id}/cancel"
RETRIEVE = "/batches/{batch_id}"
LIST = "/batches"


@pytest.fixture(scope="module")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrismServer]:
    # Installs the pinned Prism into .tools/prism on first use (~20 s), then starts in ~2 s.
    log = tmp_path_factory.mktemp("prism") / "prism.log"
    with PrismServer(DERIVED_SPEC, log_path=log) as server:
        yield server


class PreferPool(urllib3.PoolManager):
    """new_pool()'s settings plus a `Prefer` header, which is how Prism is asked for an answer
    (`code=404`) or a named example (`example=already_completed`)."""

    def __init__(self, prefer: str) -> None:
        super().__init__(num_pools=4, maxsize=4, block=True, retries=False)
        self.prefer = prefer

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        fields: Any = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        **urlopen_kw: Any,
    ) -> urllib3.BaseHTTPResponse:
        headers = {**(headers or {}), "Prefer": self.prefer}
        return super().request(method, url, body, fields, headers, json, **urlopen_kw)


class RecordedSleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(
    prism: PrismServer,
    *,
    pool: urllib3.PoolManager | None = None,
    sleep: RecordedSleeps | None = None,
    **endpoint: Any,
) -> OpenAIBatchClient:
    return OpenAIBatchClient(
        ApiEndpoint(base_url=prism.url, **endpoint),  # the spec's paths carry no /v1
        StaticApiKey(KEY),
        pool or OpenAIBatchClient.new_pool(4),
        retry_policy=RetryPolicy(max_attempts=3),
        sleep=sleep if sleep is not None else RecordedSleeps(),
    )


def deadline() -> Deadline:
    return Deadline.after(60.0)


def json_plain(value: Any) -> Any:
    """The client parses floats as Decimal; JSON Schema wants plain JSON values."""
    return json.loads(json.dumps(value, default=float))


def assert_accepted(answer: ApiResponse, path: str, method: str) -> None:
    assert answer.status == 200, f"Prism refused the request: {answer.status} {answer.body}"
    schema = response_schema_name(path, method, "200")
    assert violations(schema, json_plain(answer.body)) == []


def request_log(prism: PrismServer, since: int, marker: str) -> str:
    """Prism's log lines for the requests made after `since`; waits for `marker` to show."""
    end = time.monotonic() + 3.0
    while True:
        text = prism.log_since(since)
        if marker in text or time.monotonic() > end:
            return text
        time.sleep(0.05)


# -- requests the client makes are accepted -------------------------------------------------


def test_cancel_request_is_accepted_and_answered_with_a_batch(prism: PrismServer) -> None:
    answer = client(prism).cancel_batch(BATCH_ID, deadline())
    assert_accepted(answer, CANCEL, "post")
    assert isinstance(answer.body["status"], str)


def test_retrieve_request_is_accepted_and_answered_with_a_batch(prism: PrismServer) -> None:
    answer = client(prism).retrieve_batch(BATCH_ID, deadline())
    assert_accepted(answer, RETRIEVE, "get")


@pytest.mark.parametrize(
    ("after", "limit"),
    [(None, 100), (BATCH_ID, 100), ("batch_def456", 1), (None, 20)],
)
def test_list_request_with_cursor_and_limit_is_accepted(
    prism: PrismServer, after: str | None, limit: int
) -> None:
    answer = client(prism).list_batches(deadline(), after=after, limit=limit)
    assert_accepted(answer, LIST, "get")
    assert all(violations("Batch", json_plain(batch)) == [] for batch in answer.body["data"])


def test_request_id_declared_by_the_spec_reaches_the_response(prism: PrismServer) -> None:
    answer = client(prism).cancel_batch(BATCH_ID, deadline())
    assert answer.request_id is not None
    assert answer.request_id.startswith("req_")


@pytest.mark.parametrize("limit", [0, 101])
def test_prism_refuses_a_limit_outside_1_to_100_so_acceptance_means_something(
    prism: PrismServer, limit: int
) -> None:
    answer = client(prism).list_batches(deadline(), limit=limit)
    assert answer.status == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert [v["location"] for v in answer.body["validation"]] == [["query", "limit"]]


def test_request_without_credentials_is_rejected_by_prism(prism: PrismServer) -> None:
    raw = urllib3.PoolManager(retries=False).request(
        "POST", prism.url + f"/batches/{BATCH_ID}/cancel"
    )
    assert raw.status == 401
    assert "Invalid security scheme" in raw.headers["sl-violations"]
    assert violations("ErrorResponse", json.loads(raw.data)) == []


def test_azure_api_key_header_does_not_satisfy_the_openai_bearer_scheme(
    prism: PrismServer,
) -> None:
    answer = client(prism, style="azure").cancel_batch(BATCH_ID, deadline())
    assert answer.status == 401
    assert answer.error()["code"] == "invalid_api_key"


def test_identity_headers_are_sent_when_configured(prism: PrismServer) -> None:
    since = prism.log_offset()
    configured = client(prism, organization="org-contract", project="proj_contract")
    assert configured.cancel_batch(BATCH_ID, deadline()).status == 200

    log = request_log(prism, since, "openai-project")
    assert "openai-organization: org-contract" in log
    assert "openai-project: proj_contract" in log
    assert f"user-agent: {USER_AGENT}" in log
    assert f"authorization: Bearer {KEY}" in log


def test_identity_headers_are_absent_when_not_configured(prism: PrismServer) -> None:
    since = prism.log_offset()
    assert client(prism).retrieve_batch(BATCH_ID, deadline()).status == 200

    log = request_log(prism, since, "Responding with")
    assert f"user-agent: {USER_AGENT}" in log
    assert "openai-organization" not in log
    assert "openai-project" not in log


# -- error answers the spec documents are read correctly --------------------------------------


@pytest.mark.parametrize(("path", "call"), [(CANCEL, "cancel_batch"), (RETRIEVE, "retrieve_batch")])
def test_404_body_is_read_by_error(prism: PrismServer, path: str, call: str) -> None:
    api = client(prism, pool=PreferPool("code=404"))
    answer: ApiResponse = getattr(api, call)(BATCH_ID, deadline())

    assert answer.status == 404
    assert violations("ErrorResponse", answer.body) == []
    method = "post" if path == CANCEL else "get"
    assert answer.error() == example_value(path, method, "404", "not_found")["error"]
    assert not says_cannot_cancel(answer)


@pytest.mark.parametrize("example", example_names(CANCEL, "post", "409"))
def test_409_for_a_terminal_batch_is_recognised_as_cannot_cancel(
    prism: PrismServer, example: str
) -> None:
    api = client(prism, pool=PreferPool(f"code=409, example={example}"))
    answer = api.cancel_batch(BATCH_ID, deadline())

    assert answer.status == 409
    assert violations("ErrorResponse", answer.body) == []
    assert (
        answer.error()["message"]
        == example_value(CANCEL, "post", "409", example)["error"]["message"]
    )
    assert says_cannot_cancel(answer)


def test_401_for_a_wrong_key_is_returned_with_its_error_code(prism: PrismServer) -> None:
    api = client(prism, pool=PreferPool("code=401, example=invalid_api_key"))
    answer = api.cancel_batch(BATCH_ID, deadline())

    assert answer.status == 401
    assert answer.error()["code"] == "invalid_api_key"
    assert KEY not in json.dumps(answer.body)


def test_429_is_retried_after_the_retry_after_the_spec_declares(prism: PrismServer) -> None:
    sleeps = RecordedSleeps()
    api = client(prism, pool=PreferPool("code=429"), sleep=sleeps)

    with pytest.raises(TransientApiError, match="HTTP 429"):
        api.cancel_batch(BATCH_ID, deadline())
    # Upstream's TooManyRequests declares `Retry-After` (integer seconds, >= 1); Prism sends 1.
    assert sleeps == [1.0, 1.0]


def test_500_is_retried_then_reported_as_transient(prism: PrismServer) -> None:
    sleeps = RecordedSleeps()
    api = client(prism, pool=PreferPool("code=500"), sleep=sleeps)

    with pytest.raises(TransientApiError, match="HTTP 500"):
        api.retrieve_batch(BATCH_ID, deadline())
    assert len(sleeps) == 2  # three attempts, backoff between them
