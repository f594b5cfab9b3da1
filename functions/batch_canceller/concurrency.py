"""The shape of `map` that I/O helpers accept, so a caller can pass an executor's map."""

from collections.abc import Callable, Iterable
from typing import Any

MapFn = Callable[..., Iterable[Any]]
