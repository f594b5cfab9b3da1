"""The worker processes of a chaos run: `consumers` of them on one queue, as concurrent Lambda
execution environments. Each is killed (SIGKILL) and restarted on request, and restarted when
it exits: at an invocation's deadline, as Lambda resets a timed-out environment (counted), or
on its own (a finding)."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.reliability import announce_journal
from tests.reliability.config import ChaosConfig
from tests.reliability.deliveries import last_begin
from tests.reliability.processes import Child
from tests.reliability.worker import TIMEOUT_EXIT, read_state

POLL_SECONDS = 0.02


@dataclass
class Kill:
    at: float  # seconds into the run
    wall: str  # UTC, to compare with the events' `time`
    epoch: float  # to compare with the journals
    incarnation: int
    mid_invocation: bool
    # Events PutEvents had (or was being sent) that the record did not yet say were announced,
    # and of those, the ones PutEvents had accepted.
    in_announce_window: int
    accepted_unmarked: int


@dataclass
class _Slot:
    incarnation: int = 0
    child: Child | None = None


@dataclass
class WorkerSupervisor:
    config: ChaosConfig
    moto_url: str
    queue_url: str
    env: dict[str, str]
    work_dir: Path
    state_dir: Path
    rng: random.Random
    incarnations: int = 0  # given out so far, one per process started
    crashes: int = 0
    timeouts: int = 0  # invocations the worker stopped at their deadline
    kills: list[Kill] = field(default_factory=list)
    _slots: list[_Slot] = field(default_factory=list)

    def start(self) -> None:
        self._slots = [_Slot() for _ in range(self.config.consumers)]
        for slot in self._slots:
            self._start(slot)

    def _start(self, slot: _Slot) -> None:
        self.incarnations += 1
        slot.incarnation = self.incarnations
        config = self.config
        args = {
            "--moto-url": self.moto_url,
            "--queue-url": self.queue_url,
            "--state-dir": str(self.state_dir),
            "--incarnation": str(slot.incarnation),
            "--redelivery-probability": str(config.redelivery_probability),
            "--concurrent-copy-probability": str(config.concurrent_copy_probability),
            "--seed": str(config.seed),
            "--batch-size": str(config.batch_size),
            "--batching-window": str(config.batching_window_seconds),
            "--function-timeout": str(config.function_timeout_seconds),
            "--read-timeout": str(config.read_timeout_seconds),
        }
        slot.child = Child(
            f"worker-{slot.incarnation}",
            "tests.reliability.worker",
            [part for pair in args.items() for part in pair],
            log_path=self.work_dir / f"worker-{slot.incarnation}.log",
            env=self.env,
        ).start()

    def keep_running(self) -> None:
        """A worker that died on its own is a finding; it is restarted so the run goes on."""
        for slot in self._slots:
            child = slot.child
            if child is not None and not child.alive:
                if child.returncode == TIMEOUT_EXIT:
                    self.timeouts += 1
                else:
                    self.crashes += 1
                child.stop()
                self._start(slot)

    def kill_mid_invocation(self, now: float, patience: float = 15.0) -> Kill:
        """SIGKILL one worker while the function runs in it, then start a new one.

        Aimed: for the first half of `patience`, at a moment when an event PutEvents accepted
        is not yet marked announced (its receipt must keep the redelivery from announcing it
        again); then at a random moment of any invocation. With `avoid_announce_window`, only
        at a moment when no event is between PutEvents and its mark (a kill there can
        duplicate it only if its receipt is late).
        """
        started = time.monotonic()
        target: _Slot | None = None
        while target is None and time.monotonic() - started < patience:
            aiming = time.monotonic() - started < patience / 2
            for slot in self.rng.sample(self._slots, len(self._slots)):
                if self._fits(slot, aiming):
                    target = slot
                    break
            else:
                time.sleep(POLL_SECONDS)
        if target is None:
            target = self.rng.choice(self._slots)
        assert target.child is not None
        mid = self._in_handler(target)
        entries = self._invocation_entries(target)
        if target.child.returncode == TIMEOUT_EXIT:
            self.timeouts += 1  # it had just stopped an invocation at its deadline itself
        target.child.kill()
        epoch = time.time()
        wall = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
        target.child.stop()
        kill = Kill(
            now,
            wall.replace("+00:00", "Z"),
            epoch,
            target.incarnation,
            mid,
            len(announce_journal.in_window(entries)),
            len(announce_journal.accepted_unmarked(entries)),
        )
        self.kills.append(kill)
        self._start(target)
        return kill

    def _fits(self, slot: _Slot, aiming: bool) -> bool:
        if not self._in_handler(slot):
            return False
        if self.config.avoid_announce_window:
            time.sleep(self.rng.uniform(0.0, 0.6))  # somewhere inside the invocation
            window = announce_journal.in_window(self._invocation_entries(slot))
            return self._in_handler(slot) and not window
        if aiming:
            return bool(announce_journal.accepted_unmarked(self._invocation_entries(slot)))
        time.sleep(self.rng.uniform(0.0, 0.6))
        return self._in_handler(slot)

    def _invocation_entries(self, slot: _Slot) -> list[announce_journal.Entry]:
        """The journal of the slot's current (or latest) invocation."""
        path = announce_journal.journal_path(self.state_dir, slot.incarnation)
        began = last_begin(self.state_dir, slot.incarnation)
        return announce_journal.since(announce_journal.read(path), began)

    def _in_handler(self, slot: _Slot) -> bool:
        if slot.child is None or not slot.child.alive:
            return False
        state = read_state(self.state_dir, slot.incarnation)
        return state is not None and state.in_handler

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM lets each current invocation finish (by default within the function's
        timeout), then SIGKILL; all workers at once."""
        limit = self.config.function_timeout_seconds + 5 if timeout is None else timeout
        children = [slot.child for slot in self._slots if slot.child is not None]
        with ThreadPoolExecutor(max_workers=max(1, len(children))) as pool:
            list(pool.map(lambda child: child.stop(timeout=limit), children))
        for slot in self._slots:
            slot.child = None
