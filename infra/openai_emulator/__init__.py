"""A stateful OpenAI Batch API emulator on a real local HTTP server (stdlib only)."""

from infra.openai_emulator.faults import CHAOS_CHOICES, FAULT_KINDS, Fault
from infra.openai_emulator.server import OpenAIEmulator
from infra.openai_emulator.store import BATCH_STATUSES, CANCELLABLE_STATUSES, TERMINAL_STATUSES
from infra.openai_emulator.webhook_faults import WEBHOOK_FAULT_KINDS, WebhookFault
from infra.openai_emulator.webhook_settings import WebhookSettings
from infra.openai_emulator.wire import RecordedRequest

__all__ = [
    "BATCH_STATUSES",
    "CANCELLABLE_STATUSES",
    "CHAOS_CHOICES",
    "FAULT_KINDS",
    "TERMINAL_STATUSES",
    "WEBHOOK_FAULT_KINDS",
    "Fault",
    "OpenAIEmulator",
    "RecordedRequest",
    "WebhookFault",
    "WebhookSettings",
]
