"""The client against the emulator in each API style it must speak: OpenAI (bearer key), Azure
OpenAI (`api-key` header; `api-version` on the classic surface, none on `/openai/v1`), and
OpenAI-compatible gateways that serve the same paths under their own prefix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from batch_canceller.api_key import StaticApiKey
from batch_canceller.config import ApiStyle
from batch_canceller.deadline import Deadline
from batch_canceller.openai_api import USER_AGENT, ApiEndpoint, OpenAIBatchClient
from infra.openai_emulator import OpenAIEmulator, RecordedRequest

KEY = "sk-styles-" + "st1" * 10
API_VERSION = "2024-10-21"

StartEmulator = Callable[..., OpenAIEmulator]


@pytest.fixture
def start_emulator() -> Iterator[StartEmulator]:
    with ExitStack() as stack:

        def start(api_style: str = "openai", path_prefix: str = "/v1") -> OpenAIEmulator:
            emulator = OpenAIEmulator(
                api_keys={KEY},
                cancel_delay_seconds=60.0,
                api_style=api_style,
                path_prefix=path_prefix,
            )
            return stack.enter_context(emulator)

        yield start


def client_for(
    emu: OpenAIEmulator,
    prefix: str,
    style: ApiStyle,
    azure_api_version: str | None = None,
    organization: str | None = None,
    project: str | None = None,
) -> OpenAIBatchClient:
    endpoint = ApiEndpoint(
        base_url=emu.url + prefix,
        style=style,
        azure_api_version=azure_api_version,
        organization=organization,
        project=project,
    )
    return OpenAIBatchClient(endpoint, StaticApiKey(KEY), OpenAIBatchClient.new_pool(4))


def only_request(emu: OpenAIEmulator) -> RecordedRequest:
    (request,) = emu.requests
    return request


def assert_azure_auth(request: RecordedRequest) -> None:
    assert request.header("api-key") == KEY
    assert request.header("authorization") is None


def assert_bearer_auth(request: RecordedRequest) -> None:
    assert request.header("authorization") == f"Bearer {KEY}"
    assert request.header("api-key") is None


def test_azure_v1_surface_cancels_with_api_key_and_no_api_version(
    start_emulator: StartEmulator,
) -> None:
    emu = start_emulator("azure", "/openai/v1")
    batch_id = emu.seed()["id"]

    answer = client_for(emu, "/openai/v1", "azure").cancel_batch(batch_id, Deadline.after(30))

    assert answer.status == 200
    assert answer.body["status"] == "cancelling"
    request = only_request(emu)
    assert (request.method, request.path) == ("POST", f"/openai/v1/batches/{batch_id}/cancel")
    assert request.query == {}
    assert_azure_auth(request)


def test_azure_classic_surface_cancels_with_api_version_query(
    start_emulator: StartEmulator,
) -> None:
    emu = start_emulator("azure", "/openai")
    batch_id = emu.seed()["id"]
    api = client_for(emu, "/openai", "azure", azure_api_version=API_VERSION)

    answer = api.cancel_batch(batch_id, Deadline.after(30))

    assert answer.status == 200
    assert answer.body["status"] == "cancelling"
    request = only_request(emu)
    assert request.path == f"/openai/batches/{batch_id}/cancel"
    assert request.query == {"api-version": API_VERSION}
    assert_azure_auth(request)


def test_azure_classic_surface_lists_with_cursor_limit_and_api_version(
    start_emulator: StartEmulator,
) -> None:
    emu = start_emulator("azure", "/openai")
    newest, older = (emu.seed(created_at=1_700_000_100 - i)["id"] for i in range(2))
    api = client_for(emu, "/openai", "azure", azure_api_version=API_VERSION)

    answer = api.list_batches(Deadline.after(30), after=newest, limit=1)

    assert answer.status == 200
    assert [b["id"] for b in answer.body["data"]] == [older]
    request = only_request(emu)
    assert request.path == "/openai/batches"
    assert request.query == {"limit": "1", "after": newest, "api-version": API_VERSION}


def test_azure_classic_surface_refuses_a_client_without_api_version(
    start_emulator: StartEmulator,
) -> None:
    # Why AZURE_OPENAI_API_VERSION must be set for `/openai` bases (and unset for `/openai/v1`).
    emu = start_emulator("azure", "/openai")
    batch_id = emu.seed()["id"]

    answer = client_for(emu, "/openai", "azure").cancel_batch(batch_id, Deadline.after(30))

    assert answer.status == 400
    assert answer.error()["code"] == "MissingApiVersionParameter"
    assert (emu.get(batch_id) or {}).get("status") == "in_progress"


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("/v1", id="openai"),
        pytest.param("/openai/v1", id="groq-style"),
        pytest.param("/litellm/v1", id="litellm-under-a-sub-path"),
    ],
)
def test_openai_style_gateways_cancel_with_bearer_under_their_prefix(
    start_emulator: StartEmulator, prefix: str
) -> None:
    emu = start_emulator("openai", prefix)
    batch_id = emu.seed()["id"]
    # An api-version left configured must not leak into OpenAI-style requests.
    api = client_for(emu, prefix, "openai", azure_api_version=API_VERSION)

    answer = api.cancel_batch(batch_id, Deadline.after(30))

    assert answer.status == 200
    assert answer.body["status"] == "cancelling"
    request = only_request(emu)
    assert request.path == f"{prefix}/batches/{batch_id}/cancel"
    assert request.query == {}
    assert_bearer_auth(request)
    assert request.header("user-agent") == USER_AGENT


def test_openai_style_key_is_refused_by_an_azure_surface(start_emulator: StartEmulator) -> None:
    emu = start_emulator("azure", "/openai/v1")
    batch_id = emu.seed()["id"]

    answer = client_for(emu, "/openai/v1", "openai").cancel_batch(batch_id, Deadline.after(30))

    assert answer.status == 401
    assert (emu.get(batch_id) or {}).get("status") == "in_progress"


@pytest.mark.parametrize(
    ("style", "prefix", "api_version"),
    [
        pytest.param("openai", "/v1", None, id="openai"),
        pytest.param("azure", "/openai/v1", None, id="azure-v1"),
        pytest.param("azure", "/openai", API_VERSION, id="azure-classic"),
    ],
)
def test_organization_and_project_headers_reach_the_api_when_configured(
    start_emulator: StartEmulator, style: ApiStyle, prefix: str, api_version: str | None
) -> None:
    emu = start_emulator(style, prefix)
    batch_id = emu.seed()["id"]
    api = client_for(
        emu, prefix, style, api_version, organization="org-styles", project="proj_styles"
    )

    assert api.cancel_batch(batch_id, Deadline.after(30)).status == 200
    assert api.retrieve_batch(batch_id, Deadline.after(30)).status == 200

    for request in emu.requests:
        assert (request.organization, request.project) == ("org-styles", "proj_styles")


def test_organization_and_project_headers_are_absent_when_not_configured(
    start_emulator: StartEmulator,
) -> None:
    emu = start_emulator("openai", "/v1")
    batch_id = emu.seed()["id"]

    assert client_for(emu, "/v1", "openai").cancel_batch(batch_id, Deadline.after(30)).ok

    request = only_request(emu)
    assert (request.organization, request.project) == (None, None)
