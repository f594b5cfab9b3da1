"""Builds the application from Settings: clients created once per container and shared."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from batch_canceller.announcer import (
    EVENTS_CONNECT_SECONDS,
    EVENTS_READ_SECONDS,
    EventPublisher,
)
from batch_canceller.announcing import Announcer
from batch_canceller.api_key import ApiKeySource, RememberedKeys, SecretsManagerApiKey
from batch_canceller.api_pacing import MAX_PAUSE_SECONDS, AdaptiveConcurrency
from batch_canceller.app import Application
from batch_canceller.aws_deadline import bound_by_deadline, carrying_deadline
from batch_canceller.config import Settings
from batch_canceller.event_ledger import EventLedger
from batch_canceller.follow_up import PollSettings
from batch_canceller.observability import Tally
from batch_canceller.openai_api import ApiEndpoint, OpenAIBatchClient
from batch_canceller.pending_schedules import PendingSchedules, ScheduleNotes
from batch_canceller.processor import CancelProcessor
from batch_canceller.queue import DeadLetterSender, QueueSender
from batch_canceller.reconcile import Reconciler
from batch_canceller.records import utc_now
from batch_canceller.schedule_writer import SCHEDULER_CALLS
from batch_canceller.scheduling import CancellationScheduler
from batch_canceller.shared_pause import SharedPause
from batch_canceller.store import BatchStore
from batch_canceller.sweep import Sweeper
from batch_canceller.work import WorkRunner

if TYPE_CHECKING:
    import urllib3


AWS_CONNECT_SECONDS = 1
AWS_READ_SECONDS = 2


def aws_config(max_in_flight: int) -> Config:
    # Every worker thread may hold an AWS connection; standard retries absorb throttling.
    # Client-side parameter validation is half the CPU of a DynamoDB write (measured by
    # `make bench`); the services validate every request anyway.
    # A healthy DynamoDB or SQS connects in milliseconds and answers in tens of them; an
    # attempt that takes longer is stalled and is better retried (or given up) than awaited.
    # 1 s + 2 s keeps a whole attempt, and answering Lambda after it (aws_deadline), inside
    # the invocation's reserve (DEFAULT_RESERVE_SECONDS), so the calls made there can start.
    return Config(
        parameter_validation=False,
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=AWS_CONNECT_SECONDS,
        read_timeout=AWS_READ_SECONDS,
        max_pool_connections=max_in_flight + 4,
    )


def events_config(max_in_flight: int) -> Config:
    """PutEvents is not idempotent: one attempt per call, so that a request the bus accepted
    but answered late is never sent again behind the announce protocol's back (it resends
    only entries the bus refused, and keeps the claim of one whose outcome is not known)."""
    # PutEvents answers in tens of milliseconds; a short timeout keeps a stuck call inside the
    # time the invocation keeps for it (EVENTS_CALL_SECONDS), and its outcome is then not known.
    return aws_config(max_in_flight).merge(
        Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=EVENTS_CONNECT_SECONDS,
            read_timeout=EVENTS_READ_SECONDS,
        )
    )


def build_application(
    settings: Settings,
    *,
    session: boto3.Session | None = None,
    api_key: ApiKeySource | None = None,
    pool: urllib3.PoolManager | None = None,
    executor: ThreadPoolExecutor | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Application:
    session = session or boto3.Session()
    config = aws_config(settings.max_in_flight)
    # Their calls end before the invocation's deadline (`Application.handle` sets it).
    dynamodb = bound_by_deadline(session.client("dynamodb", config=config))
    sqs = bound_by_deadline(session.client("sqs", config=config))
    events = session.client("events", config=events_config(settings.max_in_flight))
    key_source = RememberedKeys(
        api_key
        or SecretsManagerApiKey(
            settings.api_key_secret_id,
            lambda: bound_by_deadline(session.client("secretsmanager", config=config)),
        )
    )
    tally = Tally()
    api = OpenAIBatchClient(
        ApiEndpoint(
            base_url=settings.openai_base_url,
            style=settings.api_style,
            azure_api_version=settings.azure_api_version,
            organization=settings.openai_organization,
            project=settings.openai_project,
        ),
        key_source,
        pool or OpenAIBatchClient.new_pool(settings.max_in_flight),
        observer=tally,
    )
    queue = QueueSender(sqs, settings.cancel_queue_url)
    publisher = EventPublisher(events, settings.event_bus_name, settings.event_source)
    store = BatchStore(dynamodb, settings.batches_table_name, clock)
    poll = PollSettings(
        settings.poll_initial_delay_seconds,
        settings.poll_max_delay_seconds,
        settings.poll_timeout_seconds,
        settings.first_check_delay_seconds,
    )
    workers = executor or ThreadPoolExecutor(
        max_workers=settings.max_in_flight, thread_name_prefix="cancel"
    )
    # Work on the pool's threads runs under the deadline of the invocation that submitted it.
    map_fn = carrying_deadline(workers.map)
    # One client for both, made on first use (by one thread: the scheduler makes it before its
    # threads start, the processor before its map).
    scheduler_client = functools.cache(
        lambda: session.client("scheduler", config=config.merge(SCHEDULER_CALLS))
    )
    pending = (
        PendingSchedules(
            ScheduleNotes(dynamodb, settings.batches_table_name, clock),
            scheduler_client,
            settings.schedule_group_name,
            tally,
        )
        if settings.scheduler_role_arn is not None
        else None
    )
    processor = CancelProcessor(
        runner=WorkRunner(
            api,
            store,
            poll,
            tally,
            key_source.redact_all,
            clock,
            webhooks=settings.webhooks_enabled,
        ),
        store=store,
        announcer=Announcer(
            EventLedger(dynamodb, settings.batches_table_name, clock),
            publisher,
            map_fn,
            clock,
            tally,
        ),
        queue=queue,
        poll=poll,
        map_fn=map_fn,
        tally=tally,
        clock=clock,
        receipt_grace_seconds=settings.receipt_grace_seconds,
        schedules=pending,
    )
    sweeper = Sweeper(api, queue, publisher)
    scheduler = CancellationScheduler(
        # One attempt per call, bounded in time: the writes stop before the deadline.
        scheduler_client,
        settings.schedule_group_name,
        settings.scheduler_role_arn,
        # Set whenever the role is (Settings checks it); without the role cancel_at is refused.
        settings.cancel_queue_arn or "",
        queue,
        clock,
        tally,
        pending=pending,
    )
    pacing = AdaptiveConcurrency(
        settings.max_in_flight,
        tally,
        SharedPause(dynamodb, settings.batches_table_name, max_ahead=MAX_PAUSE_SECONDS),
    )
    return Application(
        processor=processor,
        dead_letters=DeadLetterSender(sqs, settings.dead_letter_queue_url),
        queue=queue,
        tally=tally,
        run_sweep=sweeper.run,
        run_schedule=scheduler.run,
        run_reconcile=Reconciler(
            dynamodb, settings.batches_table_name, store, queue, poll, tally, clock
        ).run,
        event_source=settings.event_source,
        clock=clock,
        api_pacing=pacing.invocation if settings.adaptive_concurrency else nullcontext,
    )
