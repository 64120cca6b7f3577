"""Statistics and Markdown for ``RESULTS.md``: medians with min/max, tables, goals."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from benchmarks.harness import Run


@dataclass(frozen=True)
class Spread:
    """Median, min and max of one figure over the runs."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        data = list(values)
        return cls(statistics.median(data), min(data), max(data))

    def fmt(self, spec: str = ",.0f") -> str:
        if self.low == self.high:
            return format(self.median, spec)
        return f"{self.median:{spec}} ({self.low:{spec}} to {self.high:{spec}})"


def spread(runs: Sequence[Run], figure: Callable[[Run], float]) -> Spread:
    return Spread.of(figure(r) for r in runs)


@dataclass
class Goal:
    """One goal of the issue: what was asked, what was measured, whether it was met and, if not, why."""

    scenario: str
    goal: str
    measured: str
    met: bool | None  # None: reported, no target
    why: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: "—"}[self.met]


@dataclass
class Section:
    """A scenario's part of the report."""

    title: str
    lines: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def missed_by(measured: float, target: float, higher_is_better: bool = True) -> str:
    """``missed by 12% (22,000 vs 25,000)``-style wording for a goal that was not met."""
    gap = (target - measured) / target if higher_is_better else (measured - target) / target
    return f"missed by {gap:.0%}"


def of_variant(runs: Sequence[Run], variant: str, table_rows: int | None = None) -> list[Run]:
    """The runs of one load variant (optionally of one table size)."""
    return [r for r in runs if r.variant == variant and (table_rows is None or r.table_rows == table_rows)]


def throughput_rows(runs: Sequence[Run], variants: Sequence[str]) -> list[list[str]]:
    """Rows/s, seconds, requests and 429s per variant (median, min to max over the runs)."""
    out = []
    for variant in variants:
        vr = of_variant(runs, variant)
        out.append(
            [
                variant,
                f"{vr[0].rows:,}",
                spread(vr, lambda r: r.rows_per_s).fmt(),
                spread(vr, lambda r: r.seconds).fmt(".2f"),
                spread(vr, lambda r: r.requests).fmt(),
                spread(vr, lambda r: r.requests_per_s).fmt(".1f"),
                str(sum(r.status_429 for r in vr)),
            ]
        )
    return out


THROUGHPUT_HEADERS = ("load", "rows", "rows/s", "seconds", "requests", "requests/s", "429s (all runs)")


def cpu_rows(runs: Sequence[Run], variants: Sequence[str]) -> list[list[str]]:
    """Average cores used by each process during the load, and CPU microseconds per row."""
    out = []
    for variant in variants:
        vr = of_variant(runs, variant)
        cells = [variant]
        cells += [Spread.of(r.cores(n) for r in vr).fmt(".2f") for n in ("client", "emulator", "postgres", "other")]
        cells += [Spread.of(r.cpu_us_per_row(n) for r in vr).fmt(".1f") for n in ("client", "emulator")]
        out.append(cells)
    return out


CPU_HEADERS = (
    "load",
    "client cores",
    "emulator cores",
    "PostgreSQL cores",
    "other processes (cores)",
    "client CPU µs/row",
    "emulator CPU µs/row",
)


def runs_detail(runs: Sequence[Run]) -> list[str]:
    """Every run, in the order it ran (for the appendix)."""
    rows = [
        [
            str(i + 1),
            r.variant,
            f"{r.table_rows:,}",
            f"{r.rows_per_s:,.0f}",
            f"{r.seconds:.2f}",
            str(r.requests),
            str(r.status_429),
            f"{r.cpu['client']:.2f}",
            f"{r.cpu.get('emulator', 0.0):.2f}",
            f"{r.cores('other'):.2f}",
            f"{r.peak_rss_mb:.0f}",
        ]
        for i, r in enumerate(runs)
    ]
    headers = ("#", "load", "table rows", "rows/s", "s", "requests", "429s", "client CPU s", "emulator CPU s")
    return table((*headers, "other cores", "peak RSS MiB"), rows)
