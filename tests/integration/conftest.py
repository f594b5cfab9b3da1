"""Fixtures the integration tests share: an emulator whose cancels take effect at once, and a
fault proxy in front of moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.fault_proxy import FaultProxy
from infra.openai_emulator import OpenAIEmulator
from tests.support import API_KEY


@pytest.fixture
def instant_emulator() -> Iterator[OpenAIEmulator]:
    """Cancels take effect at once, so one invocation reaches `cancelled`."""
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=0) as emu:
        yield emu


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of moto (`aws_endpoint=proxy.url`)."""
    with FaultProxy(upstream=moto_url) as running:
        yield running


@pytest.fixture
def slow_emulator() -> Iterator[OpenAIEmulator]:
    """Cancels take an hour: a batch stays `cancelling`, followed by status checks."""
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=3600) as emu:
        yield emu
