"""Deliveries the model steps through one I/O call at a time.

Each delivery runs the real Application in a thread of its own. Every call it makes to
DynamoDB, SQS, EventBridge or the API first waits at its turnstile; the model lets one call
through (with the fault it chose for it), or kills the delivery there: the call and everything
after it never happen, as when Lambda's process dies. Only one delivery moves at a time, so
an interleaving is a sequence of model steps that Hypothesis can shrink.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from batch_canceller.observability import Tally
from tests.model.world import Faults, Message, ModelContext
from tests.support import Crash

STEP_TIMEOUT_SECONDS = 20.0


class Turnstile:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self.waiting_at: str | None = None
        self.finished = False
        self._passes = 0
        self._grant = False
        self._doom = False

    # -- the delivery's side ----------------------------------------------------------

    def enter(self, label: str) -> None:
        with self._cv:
            self.waiting_at = label
            self._cv.notify_all()
            if not self._cv.wait_for(lambda: self._grant or self._doom, STEP_TIMEOUT_SECONDS * 3):
                self._doom = True  # the model went away: die rather than hang
            self.waiting_at = None
            self._grant = False
            self._passes += 1
            self._cv.notify_all()
            if self._doom:
                raise Crash

    def done(self) -> None:
        with self._cv:
            self.finished = True
            self._cv.notify_all()

    # -- the model's side -------------------------------------------------------------

    def wait_still(self, passes: int = -1) -> None:
        """Until the delivery waits at its next call, or has finished."""
        with self._cv:
            ok = self._cv.wait_for(
                lambda: self.finished or (self.waiting_at is not None and self._passes > passes),
                STEP_TIMEOUT_SECONDS,
            )
        if not ok:
            raise AssertionError("a delivery neither reached its next call nor finished")

    def step(self) -> None:
        with self._cv:
            passes = self._passes
            self._grant = True
            self._cv.notify_all()
        self.wait_still(passes)

    def kill(self) -> None:
        with self._cv:
            self._doom = True
            self._cv.notify_all()
            ok = self._cv.wait_for(lambda: self.finished, STEP_TIMEOUT_SECONDS)
        if not ok:
            raise AssertionError("a killed delivery did not stop")


class Gated:
    """A client whose every call waits at the turnstile and takes the model's fault for it.
    Fakes get the fault as their first argument; a real boto3 client (DynamoDB) gets it as an
    error before the call (`error`: nothing written) or after it (`error_after`: written, but
    the function is told it failed, as when the answer is lost). `observe` sees every call
    that went through (the model reads the item after each write)."""

    def __init__(
        self,
        target: Any,
        turnstile: Turnstile,
        faults: Faults,
        prefix: str,
        fake: bool,
        observe: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self._target = target
        self._turnstile = turnstile
        self._faults = faults
        self._prefix = prefix
        self._fake = fake
        self._observe = observe

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._target, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._turnstile.enter(f"{self._prefix}.{name}")
            fault = self._faults.take()
            if self._fake:
                return method(fault, *args, **kwargs)
            if fault == "error":
                raise _server_error(name)
            try:
                return method(*args, **kwargs)
            finally:
                if self._observe is not None:
                    self._observe(name, kwargs)
                if fault == "error_after":
                    raise _server_error(name)

        return call


def _server_error(operation: str) -> ClientError:
    error = {"Error": {"Code": "InternalServerError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}
    return ClientError(error, operation)  # type: ignore[arg-type]


@dataclass
class Delivery:
    number: int
    messages: list[Message]
    context: ModelContext
    turnstile: Turnstile = field(default_factory=Turnstile)
    answer: dict[str, Any] | None = None
    crashed: bool = False
    error: BaseException | None = None
    thread: threading.Thread | None = None
    tally: Tally = field(default_factory=Tally)  # what the function counted, for the report

    @property
    def nonce(self) -> str:
        return f"n{self.number}"

    @property
    def finished(self) -> bool:
        return self.turnstile.finished

    def start(
        self, handle: Callable[[dict[str, Any], Any], dict[str, Any]], event: dict[str, Any]
    ) -> None:
        def run() -> None:
            try:
                self.answer = handle(event, self.context)
            except Crash:
                self.crashed = True
            except BaseException as exc:
                self.error = exc
            finally:
                self.turnstile.done()

        self.thread = threading.Thread(target=run, name=f"delivery-{self.number}", daemon=True)
        self.thread.start()
        self.turnstile.wait_still()

    def failed_ids(self) -> set[str]:
        assert self.answer is not None
        return {item["itemIdentifier"] for item in self.answer["batchItemFailures"]}
