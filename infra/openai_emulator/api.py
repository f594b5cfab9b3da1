"""The OpenAI Batch API surface: auth, api-version, routes. Pure: no sleeping, no sockets."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from infra.openai_emulator.errors import ApiError, azure_error, mask_key, not_found, openai_error
from infra.openai_emulator.store import BatchStore
from infra.openai_emulator.wire import Request, Response

API_STYLES = ("openai", "azure")

_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API "
    "key from https://platform.openai.com/account/api-keys."
)
_AZURE_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)

Handler = Callable[[BatchStore, Request, str], dict[str, Any]]


def _list(store: BatchStore, request: Request, _batch_id: str) -> dict[str, Any]:
    return store.list_page(request.query.get("after"), request.query.get("limit"))


def _create(store: BatchStore, request: Request, _batch_id: str) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        raise openai_error(400, "We could not parse the JSON body of your request.") from None
    return store.create(body)


def _retrieve(store: BatchStore, _request: Request, batch_id: str) -> dict[str, Any]:
    batch = store.get(batch_id)
    if batch is None:
        raise not_found(batch_id)
    return batch


def _cancel(store: BatchStore, _request: Request, batch_id: str) -> dict[str, Any]:
    return store.cancel(batch_id)


_ROUTES: tuple[tuple[re.Pattern[str], dict[str, Handler]], ...] = (
    (re.compile(r"/batches"), {"GET": _list, "POST": _create}),
    (re.compile(r"/batches/(?P<id>[^/]+)"), {"GET": _retrieve}),
    (re.compile(r"/batches/(?P<id>[^/]+)/cancel"), {"POST": _cancel}),
)


@dataclass(frozen=True)
class ApiSurface:
    """One configured API surface: where it lives and how callers authenticate."""

    style: str
    prefix: str

    @property
    def requires_api_version(self) -> bool:
        # Classic Azure (`/openai/...`) needs `api-version`; the v1 surface does not.
        return self.style == "azure" and not self.prefix.endswith("/v1")

    def handle(self, request: Request, store: BatchStore, api_keys: Iterable[str]) -> Response:
        try:
            self._authenticate(request, frozenset(api_keys))
            return Response.json(200, self._route(request, store))
        except ApiError as error:
            return error.response()

    def _authenticate(self, request: Request, api_keys: frozenset[str]) -> None:
        if self.style == "azure":
            if request.headers.get("api-key", "") not in api_keys:
                raise azure_error(401, "401", _AZURE_DENIED)
            if self.requires_api_version and not request.query.get("api-version"):
                raise azure_error(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            return
        scheme, _, key = request.headers.get("authorization", "").strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise openai_error(401, _MISSING_KEY, code="invalid_api_key")
        if key not in api_keys:
            raise openai_error(
                401,
                f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    def _route(self, request: Request, store: BatchStore) -> dict[str, Any]:
        relative = self._relative(request.path)
        for pattern, methods in _ROUTES:
            match = pattern.fullmatch(relative) if relative is not None else None
            if match is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                allowed = ", ".join(sorted(methods))
                error = openai_error(
                    405, f"Method {request.method} not allowed on {request.path}; use {allowed}."
                )
                error.headers["allow"] = allowed
                raise error
            return handler(store, request, unquote(match.groupdict().get("id") or ""))
        raise openai_error(404, f"Invalid URL ({request.method} {request.path})")

    def _relative(self, path: str) -> str | None:
        if not self.prefix:
            return path
        if path.startswith(self.prefix + "/"):
            return path[len(self.prefix) :]
        return None
