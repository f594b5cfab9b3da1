"""The load run's arithmetic: goodput, percentiles, the seconds series and the goals."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.load.measure import Raw, percentile, summarise
from tests.load.plot import draw
from tests.load.report import correct, goals, render

T0 = 1_800_000_000.0  # an epoch on a whole second


def _raw(stored: dict[str, tuple[str | None, str | None]], limited: int = 10) -> Raw:
    ids = ["batch_a", "batch_b", "batch_c", "batch_d"]
    return Raw(
        mode="adaptive",
        ids=ids,
        sent_at=dict.fromkeys(ids, T0),
        started=T0,
        ended=T0 + 30,
        complete=len(stored) == len(ids),
        stored=stored,
        rate_limit={
            "counts": {"requests": 410, "limited": limited},
            "per_second": [
                {"second": int(T0) + 1, "requests": 210, "limited": limited, "max_in_flight": 20},
                {"second": int(T0) + 3, "requests": 200, "limited": 0, "max_in_flight": 19},
            ],
        },
        metrics=Counter({"DeadlineDeferrals": 2}),
        announced=dict.fromkeys(ids, 1),
        dead_letters=0,
        timeouts=0,
        crashes=0,
        invocations=3,
        failed_messages=0,
        longest_invocation=1.5,
    )


def _stamp(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T0 + seconds, UTC).isoformat(timespec="milliseconds")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile([], 50) == 0.0


def test_a_complete_run_is_measured_from_the_first_send_to_the_last_record_stored() -> None:
    stored = {
        b: ("cancelled", _stamp(s)) for b, s in zip("abcd", (1.0, 2.0, 3.0, 4.0), strict=True)
    }
    result = summarise(_raw({f"batch_{k}": v for k, v in stored.items()}), rate=100.0)
    assert result.wall_seconds == 4.0
    assert result.goodput == 400 / 4.0 / 100.0
    assert result.limited_share == 10 / 410
    assert (result.p50_seconds, result.p95_seconds) == (2.0, 4.0)
    # every second of the run, the idle ones included
    assert [(s.at, s.good, s.limited) for s in result.seconds] == [
        (0, 0, 0),
        (1, 200, 10),
        (2, 0, 0),
        (3, 200, 0),
        (4, 0, 0),
    ]
    assert correct(result)
    assert all(goal.met for goal in goals(result))


def test_an_id_not_stored_cancelled_is_lost_and_fails_the_run() -> None:
    stored: dict[str, tuple[str | None, str | None]] = {
        "batch_a": ("cancelled", _stamp(1.0)),
        "batch_b": ("cancelling", _stamp(1.0)),
    }
    result = summarise(_raw(stored, limited=100), rate=100.0)
    assert result.lost == 3
    assert not correct(result)
    table = render([result], ["header"], ["footer"])
    assert "NOT MET  0 lost (3)" in table
    assert "NOT MET  <= 5% of calls answered 429" in table


def test_the_run_is_drawn_as_a_png(tmp_path: Path) -> None:
    stored: dict[str, tuple[str | None, str | None]] = {
        f"batch_{k}": ("cancelled", _stamp(1.0)) for k in "abcd"
    }
    result = summarise(_raw(stored), rate=100.0)
    path = tmp_path / "load.png"
    draw([result], 100.0, path, "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
