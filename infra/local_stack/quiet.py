"""The local stack's terminal shows its own story; what the functions log or print (their JSON
logs, the receiver's EMF metric documents, which Lambda would put in its log) goes to a file."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any


def quiet_functions(log: Any) -> None:
    """Function logs and prints from other threads go to `log`; the main thread keeps stdout."""
    for handler in logging.getLogger("batch-canceller").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log)
    sys.stdout = _StoryOnly(sys.stdout, log)


class _StoryOnly:
    """stdout for the demo's own thread; what the functions print on theirs (the receiver's
    EMF metric documents, which Lambda would put in its log) goes to the log file."""

    def __init__(self, terminal: Any, log: Any) -> None:
        self._terminal, self._log = terminal, log
        self._main = threading.main_thread()

    def write(self, text: str) -> int:
        target = self._terminal if threading.current_thread() is self._main else self._log
        return int(target.write(text))

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno...: the terminal's
        return getattr(self._terminal, name)
