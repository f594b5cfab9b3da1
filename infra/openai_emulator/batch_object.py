"""A new Batch object: every field of the spec's Batch schema, as the status implies."""

from __future__ import annotations

import secrets
import string
from typing import Any

EXPIRY_SECONDS = 24 * 60 * 60
_ALNUM = string.ascii_letters + string.digits


def _file_id() -> str:
    return "file-" + "".join(secrets.choice(_ALNUM) for _ in range(22))


def new_batch(
    batch_id: str,
    status: str,
    created_at: int,
    metadata: dict[str, str] | None,
    endpoint: str,
    model: str,
) -> dict[str, Any]:
    """Every field of the spec's Batch schema, in its order, nulls included."""
    started = status != "validating"
    total = 100
    completed = total if status == "completed" else 0
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": endpoint,
        "model": model,
        "errors": failed_errors() if status == "failed" else None,
        "input_file_id": _file_id(),
        "completion_window": "24h",
        "status": status,
        "output_file_id": _file_id() if status == "completed" else None,
        "error_file_id": None,
        "created_at": created_at,
        "in_progress_at": created_at if started and status != "failed" else None,
        "expires_at": created_at + EXPIRY_SECONDS,
        "finalizing_at": created_at if status in ("finalizing", "completed") else None,
        "completed_at": created_at if status == "completed" else None,
        "failed_at": created_at if status == "failed" else None,
        "expired_at": created_at + EXPIRY_SECONDS if status == "expired" else None,
        "cancelling_at": created_at if status in ("cancelling", "cancelled") else None,
        "cancelled_at": created_at if status == "cancelled" else None,
        "request_counts": {"total": total if started else 0, "completed": completed, "failed": 0},
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
        "metadata": metadata,
    }


def failed_errors() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "code": "invalid_json_line",
                "message": "This line is not parseable as valid JSON.",
                "param": None,
                "line": 1,
            }
        ],
    }
