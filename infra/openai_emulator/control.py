"""The `/_emulator/...` control plane, so another process can drive a running emulator."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from infra.openai_emulator.errors import ApiError, not_found, openai_error
from infra.openai_emulator.faults import Fault
from infra.openai_emulator.webhook_control import ROUTES as WEBHOOK_ROUTES
from infra.openai_emulator.wire import Request, Response

if TYPE_CHECKING:
    from infra.openai_emulator.server import OpenAIEmulator

CONTROL_PREFIX = "/_emulator"

Action = Callable[["OpenAIEmulator", Request, str], Response]


def _object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise TypeError("the body must be a JSON object")
    return body


def _health(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    return Response.json(200, {"status": "ok", "base_url": emu.base_url})


def _seed(emu: OpenAIEmulator, request: Request, _arg: str) -> Response:
    body = _object(request)
    if "batches" in body:
        specs = body["batches"]
        if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
            raise ValueError("'batches' must be a list of objects")
        return Response.json(200, [emu.seed(**spec) for spec in specs])
    count = body.pop("count", 1)
    if not isinstance(count, int) or count < 0:
        raise ValueError("'count' must be a non-negative integer")
    return Response.json(200, emu.seed_many(count, **body))


def _batches(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    return Response.json(200, emu.batches())


def _batch(emu: OpenAIEmulator, _request: Request, batch_id: str) -> Response:
    batch = emu.get(batch_id)
    if batch is None:
        return not_found(batch_id).response()
    return Response.json(200, batch)


def _add_fault(emu: OpenAIEmulator, request: Request, _arg: str) -> Response:
    emu.inject(Fault.from_dict(_object(request)))
    return Response.empty()


def _clear_faults(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    emu.clear_faults()
    return Response.empty()


def _chaos(emu: OpenAIEmulator, request: Request, _arg: str) -> Response:
    body = _object(request)
    emu.inject_chaos(
        rate=float(body.get("rate", 0.2)),
        seed=body.get("seed", 1),
        read_timeout=float(body.get("read_timeout", 1.0)),
    )
    return Response.empty()


def _fault_counts(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    return Response.json(200, emu.fault_counts)


def _reset(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    emu.reset()
    return Response.empty()


def _requests(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    return Response.json(200, [r.to_json() for r in emu.requests])


def _clear_requests(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    emu.clear_requests()
    return Response.empty()


def _get_config(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    return Response.json(200, emu.config())


def _set_config(emu: OpenAIEmulator, request: Request, _arg: str) -> Response:
    body = _object(request)
    unknown = set(body) - {
        "latency_seconds",
        "cancel_delay_seconds",
        "cancel_lag_seconds",
        "api_keys",
    }
    if unknown:
        raise ValueError(f"unknown config fields: {sorted(unknown)}")
    if "latency_seconds" in body:
        emu.latency_seconds = float(body["latency_seconds"])
    if "cancel_delay_seconds" in body:
        emu.cancel_delay_seconds = float(body["cancel_delay_seconds"])
    if "cancel_lag_seconds" in body:
        lag = body["cancel_lag_seconds"]
        emu.cancel_lag_seconds = None if lag is None else float(lag)
    if "api_keys" in body:
        keys = body["api_keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("'api_keys' must be a list of strings")
        emu.set_api_keys(keys)
    return Response.json(200, emu.config())


def _get_rate_limit(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    return Response.json(200, emu.rate_limit.snapshot())


def _set_rate_limit(emu: OpenAIEmulator, request: Request, _arg: str) -> Response:
    """`{"requests_per_second": R, "burst": B}` (R null: no limit); the bucket starts full."""
    body = _object(request)
    unknown = set(body) - {"requests_per_second", "burst"}
    if unknown:
        raise ValueError(f"unknown rate_limit fields: {sorted(unknown)}")
    rate, burst = body.get("requests_per_second"), body.get("burst")
    emu.rate_limit.configure(
        None if rate is None else float(rate), None if burst is None else float(burst)
    )
    return Response.json(200, emu.rate_limit.snapshot())


def _clear_rate_limit_counts(emu: OpenAIEmulator, _request: Request, _arg: str) -> Response:
    emu.rate_limit.reset_counts()
    return Response.empty()


_ROUTES: tuple[tuple[str, re.Pattern[str], Action], ...] = tuple(
    (method, re.compile(CONTROL_PREFIX + path), action)
    for method, path, action in (
        ("GET", "/health", _health),
        ("POST", "/seed", _seed),
        ("GET", "/batches", _batches),
        ("GET", "/batches/([^/]+)", _batch),
        ("POST", "/faults", _add_fault),
        ("DELETE", "/faults", _clear_faults),
        ("POST", "/chaos", _chaos),
        ("GET", "/fault_counts", _fault_counts),
        ("POST", "/reset", _reset),
        ("GET", "/requests", _requests),
        ("DELETE", "/requests", _clear_requests),
        ("GET", "/config", _get_config),
        ("POST", "/config", _set_config),
        *WEBHOOK_ROUTES,
        ("GET", "/rate_limit", _get_rate_limit),
        ("POST", "/rate_limit", _set_rate_limit),
        ("DELETE", "/rate_limit/counts", _clear_rate_limit_counts),
    )
)


def is_control(path: str) -> bool:
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


def handle(emu: OpenAIEmulator, request: Request) -> Response:
    path_matched = False
    for method, pattern, action in _ROUTES:
        match = pattern.fullmatch(request.path)
        if match is None:
            continue
        path_matched = True
        if method != request.method:
            continue
        try:
            return action(emu, request, match.group(1) if match.groups() else "")
        except ApiError as error:
            return error.response()
        except (ValueError, TypeError) as error:
            # Bad JSON, unknown fields, wrong types: the caller's mistake, said plainly.
            return openai_error(400, str(error)).response()
    if path_matched:
        return openai_error(405, f"Method {request.method} not allowed.").response()
    return openai_error(404, f"Unknown control route {request.path}.").response()
