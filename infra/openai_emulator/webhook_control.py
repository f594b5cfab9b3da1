"""The `/_emulator/webhooks...` control routes (and `/_emulator/batches/{id}/finish`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from infra.openai_emulator.webhook_faults import WebhookFault
from infra.openai_emulator.wire import Request, Response

if TYPE_CHECKING:
    from infra.openai_emulator.server import OpenAIEmulator

Action = Callable[["OpenAIEmulator", Request, str], Response]


def _object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise TypeError("the body must be a JSON object")
    return body


def _get_config(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    return Response.json(200, emu.webhooks.config())


def _set_config(emu: OpenAIEmulator, request: Request, _arg: str) -> Response:
    emu.webhooks.configure(_object(request))
    return Response.json(200, emu.webhooks.config())


def _deliveries(emu: OpenAIEmulator, request: Request, _arg: str) -> Response:
    return Response.json(200, emu.webhooks.deliveries(request.query.get("batch_id")))


def _clear_deliveries(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    emu.webhooks.clear()
    return Response.empty()


def _faults(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    faults = emu.webhooks.faults
    return Response.json(200, {"armed": faults.armed(), "counts": faults.counts()})


def _add_fault(emu: OpenAIEmulator, request: Request, _arg: str) -> Response:
    emu.webhooks.faults.add(WebhookFault.from_dict(_object(request)))
    return Response.empty()


def _clear_faults(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    emu.webhooks.faults.clear()
    return Response.empty()


def _finish(emu: OpenAIEmulator, request: Request, batch_id: str) -> Response:
    status = _object(request).get("status")
    if not isinstance(status, str):
        raise TypeError("'status' must be a string")
    return Response.json(200, emu.finish(batch_id, status))


ROUTES: tuple[tuple[str, str, Action], ...] = (
    ("GET", "/webhooks", _get_config),
    ("POST", "/webhooks", _set_config),
    ("GET", "/webhooks/deliveries", _deliveries),
    ("DELETE", "/webhooks/deliveries", _clear_deliveries),
    ("GET", "/webhooks/faults", _faults),
    ("POST", "/webhooks/faults", _add_fault),
    ("DELETE", "/webhooks/faults", _clear_faults),
    ("POST", "/batches/([^/]+)/finish", _finish),
)
