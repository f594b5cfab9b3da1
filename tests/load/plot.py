"""The run as a PNG: per second, goodput, 429s and requests in flight, both modes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.load.measure import Result, Second

COLOURS = {"adaptive": "tab:blue", "fixed": "tab:red"}


def draw(results: list[Result], rate: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    panels: tuple[tuple[str, Callable[[Second], int]], ...] = (
        ("non-429 answers/s (goodput)", lambda s: s.good),
        ("429 answers/s", lambda s: s.limited),
        ("most requests in flight", lambda s: s.max_in_flight),
    )
    for axis, (label, value) in zip(axes, panels, strict=True):
        for result in results:
            xs = [s.at for s in result.seconds]
            ys = [value(s) for s in result.seconds]
            axis.plot(xs, ys, color=COLOURS.get(result.mode), linewidth=1, label=result.mode)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].axhline(rate, color="grey", linestyle="--", linewidth=1, label=f"R = {rate:g}/s")
    axes[0].legend(loc="upper right")
    # The fixed client's 429s and requests in flight are 10-100 times the adaptive one's: log
    # scales (symlog for 429s, which are often 0), with plain numbers on the ticks.
    axes[1].set_yscale("symlog", linthresh=1)
    axes[1].set_ylim(bottom=0)
    axes[2].set_yscale("log")
    for axis in axes[1:]:
        axis.yaxis.set_major_locator(
            matplotlib.ticker.FixedLocator([1, 3, 10, 30, 100, 300, 1000, 3000])
        )
        axis.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[2].set_xlabel("seconds since the commands were sent")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
