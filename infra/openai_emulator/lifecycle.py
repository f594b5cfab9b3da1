"""The thread that applies batch status changes when they are due, so that a batch reaches
`cancelled` (and its webhook goes out) on time even if nobody asks for it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from infra.openai_emulator.store import BatchStore

# The longest wait between two looks: bounds the lag under a clock that is not time.time.
MAX_WAIT_SECONDS = 0.05


class LifecycleThread:
    def __init__(self, store: BatchStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="emulator-lifecycle")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._store.wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        wake = self._store.wake
        while not self._stop.is_set():
            wake.clear()  # before reading: a change scheduled from here on sets it again
            due = self._store.advance_due()
            timeout = None if due is None else min(max(due - self._clock(), 0.0), MAX_WAIT_SECONDS)
            wake.wait(timeout)
