"""`python -m tests.unit.aimd_simulation`: K invocations' `aimd.Window`s against one token
bucket, in virtual time, for docs/rate-limits.md. Each invocation always has work; an answer
takes the round trip (+/- 20 %), a 429 is answered at once with the bucket's wait. Every answer
carries the bucket's `x-ratelimit-*` headers as the emulator sends them (`rate_limit.py`),
read back through `rate_headers.budget`. No CPU, no DynamoDB: it shows what the window does,
not what a machine manages."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from batch_canceller.aimd import SLOW_START, Answer, Settings, Ticket, Window
from batch_canceller.rate_headers import Budget, budget
from infra.openai_emulator.rate_limit import duration


@dataclass
class Run:
    rate: float
    burst: float
    invocations: int
    ceiling: int
    rtt: float
    settings: dict[str, float] = field(default_factory=dict)
    seconds: float = 60.0
    seed: int = 1
    headers: bool = False  # the window reads the budget headers
    slow_start: bool = False  # cold start at SLOW_START, doubling; else at the ceiling
    empty_wait: bool = True  # with headers: none remaining pauses until the reset

    def simulate(self) -> tuple[float, float]:
        """Goodput as a fraction of the rate (after the first 5 s), and the share of 429s."""
        rng = random.Random(self.seed)
        first = SLOW_START if self.slow_start else self.ceiling
        start = Settings(self.ceiling, first, slow_start=self.slow_start, **self.settings)
        windows = [Window(start) for _ in range(self.invocations)]
        tokens, refilled = self.burst, 0.0
        events: list[tuple[float, int, int, Ticket | None, float, Budget | None]] = []
        sent = limited = 0
        accepted: dict[int, int] = {}

        def told() -> Budget | None:
            if not self.headers:
                return None
            reset = duration((self.burst - tokens) / self.rate)
            return budget(
                {
                    "x-ratelimit-limit-requests": str(int(self.burst)),
                    "x-ratelimit-remaining-requests": str(int(tokens)),
                    "x-ratelimit-reset-requests": reset,
                }
            )

        def send(k: int, now: float) -> None:
            nonlocal tokens, refilled, sent
            window = windows[k]
            while window.has_slot() and window.paused_for(now) <= 0:
                ticket = window.take(now)
                sent += 1
                tokens, refilled = min(self.burst, tokens + (now - refilled) * self.rate), now
                if tokens >= 1:
                    tokens -= 1
                    answer_at = now + self.rtt * rng.uniform(0.8, 1.2)
                    heapq.heappush(events, (answer_at, 0, k, ticket, 0.0, told()))
                else:
                    wait = (1 - tokens) / self.rate
                    heapq.heappush(events, (now + 0.002, 1, k, ticket, wait, told()))
            if (pause := window.paused_for(now)) > 0:
                heapq.heappush(events, (now + pause, 2, k, None, 0.0, None))

        for k in range(self.invocations):
            send(k, rng.uniform(0, 0.01))
        while events:
            now, kind, k, ticket, wait, seen = heapq.heappop(events)
            if now > self.seconds:
                break
            if ticket is not None and kind == 0:
                accepted[int(now)] = accepted.get(int(now), 0) + 1
                empty = seen is not None and seen.remaining == 0 and self.empty_wait
                reset = seen.reset_seconds if empty and seen is not None else None
                windows[k].give_back(ticket, Answer.ACCEPTED, now, reset, seen)
            elif ticket is not None:
                limited += 1
                windows[k].give_back(ticket, Answer.RATE_LIMITED, now, wait, seen)
            send(k, now)
        steady = [accepted.get(s, 0) for s in range(5, int(self.seconds))]
        return sum(steady) / len(steady) / self.rate, limited / sent


VARIANTS = {
    "TCP's: +1 a round trip, floor 1": {"growth_seconds": 1e-9, "floor": 1.0},
    "+1 a round trip, floor 0.25": {"growth_seconds": 1e-9},
    "+1 a second, floor 1": {"floor": 1.0},
    "+1 a second, floor 0.25 (chosen)": {},
    "chosen, but decrease 0.7": {"decrease": 0.7},
}
# Before (issue 13's measured client) and after: slow start and the budget headers.
CLIENTS: dict[str, dict[str, bool]] = {
    "before: cold at the ceiling, no headers": {},
    "slow start only": {"slow_start": True},
    "headers only": {"headers": True},
    "headers, no wait when none remains": {"headers": True, "empty_wait": False},
    "slow start + headers (chosen)": {"slow_start": True, "headers": True},
}


def main() -> None:
    print("R=200 req/s, burst 200, 8 invocations x 32 in flight at most, 60 s")
    print(f"{'variant':36s} {'RTT':>5s} {'goodput/R':>9s} {'429 share':>9s}")
    for name, settings in VARIANTS.items():
        for rtt in (0.05, 0.1, 0.3):
            goodput, share = Run(200, 200, 8, 32, rtt, settings).simulate()
            print(f"{name:36s} {rtt:5.2f} {goodput:9.2f} {share:9.3f}")
    print()
    print("Before/after, 8 invocations x 32, burst = R, 120 s (the start included)")
    print(f"{'client':40s} {'R':>4s} {'RTT':>5s} {'goodput/R':>9s} {'429 share':>9s}")
    for name, client in CLIENTS.items():
        for rate, rtt in ((50, 0.2), (200, 0.1), (200, 0.05)):
            run = Run(rate, rate, 8, 32, rtt, seconds=120, **client)
            goodput, share = run.simulate()
            print(f"{name:40s} {rate:4d} {rtt:5.2f} {goodput:9.2f} {share:9.3f}")


if __name__ == "__main__":
    main()
