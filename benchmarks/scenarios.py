"""The four scenarios of issue 6, each measured in the same run as the naive baseline (scenario 5 is in
``many_workers.py``)."""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.emulator_proc import EmulatorProcess, emulator_args, running_emulator
from benchmarks.harness import Bench, Run
from benchmarks.profiling import (
    CLIENT_STAGES,
    EMULATOR_STAGES,
    PROFILE_RATE,
    Profile,
    aggregate,
    in_client_load,
    py_spy,
    record_command,
    stop_recorder,
)
from benchmarks.report import (
    CPU_HEADERS,
    THROUGHPUT_HEADERS,
    Goal,
    Section,
    Spread,
    cpu_rows,
    missed_by,
    of_variant,
    runs_detail,
    spread,
    table,
    throughput_rows,
)
from peak_provider.extras import EXTRAS

API_ROWS_PER_S = 50 * 500  # 50 requests/s x 500 rows/request
IN_FLIGHT = EXTRAS["max_in_flight"].default  # the connection default
PACED_RPS = 49.5  # 50 requests/s less the client pacing's 1% headroom (ratecontrol.HEADROOM)
CEILING_TARGET = 0.9 * API_ROWS_PER_S
SPEEDUP_TARGET = 4.0
CPU_TARGET = 50_000
FLAT_MEMORY = 0.10
Table = tuple[str, int]  # (name, rows)
Profiled = tuple[Profile, Profile, Run] | str  # client and emulator profiles of one run, or why there are none


@dataclass(frozen=True)
class Sizes:
    """Table sizes: the throughput table and the two memory tables; scenario 5's rows and worker counts."""

    throughput: int = 200_000
    memory: tuple[int, int] = (100_000, 1_000_000)
    # scenario 5 reads the larger memory table: 40 s at the tenant's 25,000 rows/s, so the start-up burst
    # (every worker starts at the full rate) does not decide the figures
    tenant_rows: int = 1_000_000
    workers: tuple[int, ...] = (1, 4, 16)


FULL = Sizes()
SMOKE = Sizes(throughput=3_000, memory=(1_000, 4_000), tenant_rows=4_000, workers=(2,))


DRY_RUN = "provider, dryRun"


def _paired_runs(
    bench: Bench,
    emu: EmulatorProcess,
    table_: Table,
    conn_extra: dict[str, Any],
    batch_rows: int,
    with_dry_run: bool = False,
) -> list[Run]:
    """Provider then naive (then, optionally, the provider with ``dry_run``), ``bench.runs`` times."""
    runs = []
    for _ in range(bench.runs):
        runs.append(bench.measure(emu, "provider", table_, conn_extra))
        runs.append(bench.measure(emu, "naive", table_, conn_extra, batch_rows=batch_rows))
        if with_dry_run:
            runs.append(bench.measure(emu, "provider", table_, conn_extra, label=DRY_RUN, dry_run=True))
    return runs


def _setup_lines(emu: EmulatorProcess, conn_extra: dict[str, Any], notes: Sequence[str]) -> list[str]:
    extras = ", ".join(f"`{k}={v:,}`" if isinstance(v, int) else f"`{k}={v}`" for k, v in conn_extra.items())
    return [
        f"- Emulator: `{emu.command}`",
        f"- Connection extras beyond solution/application/prefix/suffix: {extras or 'none (defaults)'}",
        *[f"- {note}" for note in notes],
        "",
    ]


def _cpu_budget_note(runs: Sequence[Run]) -> str:
    busy = spread(runs, lambda r: sum(r.cores(n) for n in ("client", "emulator", "postgres", "other"))).median
    cores = os.cpu_count() or 1
    return (
        f"median busy {busy:.2f} of {cores} cores: client {spread(runs, lambda r: r.cores('client')).median:.2f}, "
        f"emulator {spread(runs, lambda r: r.cores('emulator')).median:.2f}, "
        f"PostgreSQL {spread(runs, lambda r: r.cores('postgres')).median:.2f}, "
        f"other processes {spread(runs, lambda r: r.cores('other')).median:.2f}"
    )


# --- 1. ceiling ------------------------------------------------------------------------------------


def ceiling(bench: Bench, table_: Table) -> Section:
    """Default settings against the API's limits with 100 ms latency: rows/s, speed-up, 429s."""
    with running_emulator(emulator_args(latency_ms=100)) as emu:
        runs = _paired_runs(bench, emu, table_, {}, batch_rows=500, with_dry_run=True)
        section = Section("1. Ceiling: default settings, 100 ms latency, 50 requests/s")
        section.lines += _setup_lines(
            emu,
            {},
            [
                f"Table `{table_[0]}` ({table_[1]:,} rows); the provider runs `SqlToPeakOperator` (fetch_size 5000, "
                f"max_in_flight {IN_FLIGHT}, requests_per_second 50, 500 rows/request); the naive loop posts 500-row "
                "batches.",
                f"Ceiling of the API: {API_ROWS_PER_S:,} rows/s; the client paces at 1.01/50 s between requests "
                f"({PACED_RPS} requests/s, {PACED_RPS * 500:,.0f} rows/s at most).",
                f"*{DRY_RUN}* (supplementary): the same provider load with `dry_run=True`, so the emulator validates "
                "every row but does not store it. The client's work is the same; it shows what the provider does "
                "when the server is not short of CPU (the real API does not run on the Airflow worker's cores).",
            ],
        )
    provider, naive, dry = of_variant(runs, "provider"), of_variant(runs, "naive"), of_variant(runs, DRY_RUN)
    variants = ("provider", "naive", DRY_RUN)
    section.lines += table(THROUGHPUT_HEADERS, throughput_rows(runs, variants))
    section.lines += ["CPU during the loads (average cores over the load; µs of CPU per row):", ""]
    section.lines += table(CPU_HEADERS, cpu_rows(runs, variants))
    section.lines += _ceiling_reading(provider, naive)
    section.goals, section.runs = _ceiling_goals(provider, naive, dry), runs
    return section


def _ceiling_reading(provider: list[Run], naive: list[Run]) -> list[str]:
    per_request = spread(naive, lambda r: r.seconds / r.requests).median * 1000
    pacing = spread(provider, lambda r: r.requests_per_s).median / PACED_RPS
    return [
        f"The naive loop spends {per_request:.0f} ms per request (100 ms latency, then the emulator's work and its "
        f"own encoding), one request at a time: at most {500 / per_request * 1000:,.0f} rows/s whatever the CPU. "
        f"The provider keeps up to {IN_FLIGHT} requests in flight and reached {pacing:.0%} of its own {PACED_RPS} "
        "requests/s pacing.",
        "",
    ]


def _emulator_bound(provider: list[Run], dry: list[Run], target: float | None) -> str:
    """Why a provider load fell short: the emulator's CPU per row (and what the dry run reached)."""
    per_row = spread(provider, lambda r: r.cpu_us_per_row("emulator")).median
    emulator = spread(provider, lambda r: r.cores("emulator")).median
    client = spread(provider, lambda r: r.cores("client")).median
    need = f"{target:,.0f} rows/s would take {target * per_row / 1e6:.2f} of a core, and " if target else ""
    text = (
        f"The emulator, one Python process (one core at most), spends {per_row:.1f} µs of CPU per stored row: "
        f"{need}it ran at {emulator:.2f} cores while the client used {client:.2f}."
    )
    if dry:
        rate = spread(dry, lambda r: r.rows_per_s)
        dry_cost = spread(dry, lambda r: r.cpu_us_per_row("emulator")).median
        text += (
            f" With `dry_run` (nothing stored, the emulator at {dry_cost:.1f} µs/row) the same provider load "
            f"reached {rate.fmt()} rows/s ({rate.median / API_ROWS_PER_S:.1%} of the ceiling)."
        )
    return text


def _ceiling_goals(provider: list[Run], naive: list[Run], dry: list[Run]) -> list[Goal]:
    rate = spread(provider, lambda r: r.rows_per_s)
    speedup = rate.median / spread(naive, lambda r: r.rows_per_s).median
    throttled = sum(r.status_429 for r in provider + dry)
    why_rate = ""
    if rate.median < CEILING_TARGET:
        why_rate = (
            f"{missed_by(rate.median, CEILING_TARGET)}: {spread(provider, lambda r: r.requests_per_s).median:.1f} "
            f"requests/s against {PACED_RPS} paced; {_cpu_budget_note(provider)}. "
            + _emulator_bound(provider, dry, API_ROWS_PER_S)
        )
    return [
        Goal(
            "1. Ceiling",
            f">= 90% of {API_ROWS_PER_S:,} rows/s (>= {CEILING_TARGET:,.0f})",
            f"{rate.fmt()} rows/s = {rate.median / API_ROWS_PER_S:.1%} of the ceiling",
            rate.median >= CEILING_TARGET,
            why_rate,
        ),
        Goal(
            "1. Ceiling",
            f">= {SPEEDUP_TARGET:.0f}x the naive loop",
            f"{speedup:.1f}x",
            speedup >= SPEEDUP_TARGET,
            "" if speedup >= SPEEDUP_TARGET else missed_by(speedup, SPEEDUP_TARGET),
        ),
        Goal("1. Ceiling", "zero 429s", f"{throttled} in {len(provider + dry)} provider runs", throttled == 0),
    ]


# --- 2. CPU ----------------------------------------------------------------------------------------

CPU_EXTRA = {"requests_per_second": 1_000_000, "max_in_flight": 1}


def cpu(bench: Bench, table_: Table, profile: bool = True) -> Section:
    """No latency, no rate limit, one request in flight: what the pipeline itself costs."""
    with running_emulator(emulator_args(rps=0)) as emu:
        runs = _paired_runs(bench, emu, table_, CPU_EXTRA, batch_rows=500)
        profiled = _profile(bench, emu, table_) if profile else "profiling skipped (--no-profile)"
        section = Section("2. CPU: no latency, no rate limit, max_in_flight 1")
        section.lines += _setup_lines(
            emu,
            CPU_EXTRA,
            [
                f"Table `{table_[0]}` ({table_[1]:,} rows). *Wall rows/s* is the whole pipeline; *client rows per "
                "CPU-second* is rows divided by the CPU time of the client process during the load "
                "(fetch + validate + serialise + send, one Python process, so one core at most).",
            ],
        )
    provider = of_variant(runs, "provider")
    per_cpu = spread(provider, lambda r: r.client_rows_per_cpu_s)
    naive_per_cpu = spread(of_variant(runs, "naive"), lambda r: r.client_rows_per_cpu_s)
    section.lines += table(THROUGHPUT_HEADERS, throughput_rows(runs, ("provider", "naive")))
    section.lines += table(
        ("load", "client rows per CPU-second"), [["provider", per_cpu.fmt()], ["naive", naive_per_cpu.fmt()]]
    )
    section.lines += ["CPU during the loads:", ""]
    section.lines += table(CPU_HEADERS, cpu_rows(runs, ("provider", "naive")))
    section.lines += _cpu_reading(provider)
    section.lines += _profile_lines(profiled)
    section.goals, section.runs = _cpu_goals(provider, per_cpu, profiled), runs
    return section


def _cpu_reading(provider: list[Run]) -> list[str]:
    client = spread(provider, lambda r: r.cpu_us_per_row("client")).median
    server = spread(provider, lambda r: r.cpu_us_per_row("emulator")).median
    return [
        "Wall rows/s is below the client's rows per CPU-second because with `max_in_flight` 1 the client waits for "
        f"each answer before it sends the next batch, and the emulator spends {server:.1f} µs of CPU per row "
        f"(against the client's {client:.1f}) on the same {os.cpu_count()} cores.",
        "",
    ]


def _cpu_goals(provider: list[Run], per_cpu: Spread, profiled: Profiled) -> list[Goal]:
    wall = spread(provider, lambda r: r.rows_per_s)
    why = ""
    if per_cpu.median < CPU_TARGET and not isinstance(profiled, str):
        stages = ", ".join(f"{name} {share:.0%}" for name, share in profiled[0].top(profiled[0].stages, 4))
        why = f"{missed_by(per_cpu.median, CPU_TARGET)}; client CPU by stage: {stages}."
    elif per_cpu.median < CPU_TARGET:
        why = missed_by(per_cpu.median, CPU_TARGET)
    wall_why = ""
    if wall.median < CPU_TARGET:
        wall_why = (
            f"{missed_by(wall.median, CPU_TARGET)}: with one request in flight the client waits for every answer, and "
            f"the emulator shares the machine ({_cpu_budget_note(provider)})."
        )
    return [
        Goal(
            "2. CPU",
            f">= {CPU_TARGET:,} rows/s on one core (client rows per CPU-second)",
            per_cpu.fmt(),
            per_cpu.median >= CPU_TARGET,
            why,
        ),
        Goal("2. CPU", f"(same, as wall rows/s of the pipeline, >= {CPU_TARGET:,})", wall.fmt(), None, wall_why),
    ]


def _profile(bench: Bench, emu: EmulatorProcess, table_: Table) -> Profiled:
    """One extra, untimed provider run with py-spy on the client and on the emulator."""
    if py_spy() is None:
        return "profile not taken: py-spy is not installed (`pip install py-spy`)"
    with tempfile.TemporaryDirectory(prefix="peak-bench-profile-") as tmp:
        client_out, emulator_out = Path(tmp) / "client.txt", Path(tmp) / "emulator.txt"
        recorder = subprocess.Popen(
            record_command(emulator_out, pid=emu.pid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            run = bench.measure(emu, "provider", table_, CPU_EXTRA, prefix=record_command(client_out))
        except RuntimeError as exc:
            return f"profile not taken: {str(exc).splitlines()[0]}"
        finally:
            stop_recorder(recorder)
        if not client_out.exists() or not emulator_out.exists():
            return "profile not taken: py-spy wrote no samples (is ptrace allowed?)"
        client = aggregate(client_out.read_text().splitlines(), CLIENT_STAGES, in_client_load)
        server = aggregate(emulator_out.read_text().splitlines(), EMULATOR_STAGES)
    return client, server, run


def _shares(profile: Profile, counter: Counter[str], n: int, us_per_row: float, code: bool = False) -> list[list[str]]:
    """Top entries with their share of samples and the CPU µs per row that share stands for."""
    return [
        [f"`{name}`" if code else name, f"{share:.1%}", f"{share * us_per_row:.1f}"]
        for name, share in profile.top(counter, n)
    ]


def _profile_lines(profiled: Profiled) -> list[str]:
    lines = ["### Where the time goes", ""]
    if isinstance(profiled, str):
        return [*lines, profiled, ""]
    client, server, run = profiled
    client_us, server_us = run.cpu_us_per_row("client"), run.cpu_us_per_row("emulator")
    lines += [
        f"One extra provider run (not timed) under `py-spy record --gil --nonblocking --rate {PROFILE_RATE} "
        "--format raw`: the "
        "client probe as a child of py-spy, the emulator attached by pid. Shares are of samples holding the GIL "
        "(Python CPU time), attributed to the innermost Python frame (self time; C calls count in their caller). "
        "C code that runs without the GIL (SQLite inside the emulator, socket I/O) is not sampled, so the emulator's "
        "storage share is a lower bound; the OS-measured µs/row above are the totals.",
        "",
        f"The profiled run: {run.rows_per_s:,.0f} rows/s; client {client_us:.1f} µs of CPU per row, emulator "
        f"{server_us:.1f} µs per row. *µs/row* below is a stage's share of that.",
        "",
        f"**Client** ({client.samples:,} samples in the load):",
        "",
    ]
    lines += table(("stage", "share", "µs/row"), _shares(client, client.stages, 14, client_us))
    lines += table(("function (self)", "share", "µs/row"), _shares(client, client.functions, 15, client_us, True))
    lines += [f"**Emulator** ({server.samples:,} samples):", ""]
    lines += table(("stage", "share", "µs/row"), _shares(server, server.stages, 8, server_us))
    lines += table(("function (self)", "share", "µs/row"), _shares(server, server.functions, 8, server_us, True))
    return lines


# --- 3. memory -------------------------------------------------------------------------------------

MEMORY_EXTRA = {"requests_per_second": 1_000_000}


def memory(bench: Bench, small: Table, large: Table) -> Section:
    """Peak RSS of a load of ``small`` and ``large`` rows, provider vs naive, each in a fresh process."""
    runs: list[Run] = []
    with running_emulator(emulator_args(rps=0)) as emu:
        for _ in range(bench.runs):
            for table_ in (small, large):
                runs.append(bench.measure(emu, "provider", table_, MEMORY_EXTRA, dry_run=True))
                runs.append(bench.measure(emu, "naive", table_, MEMORY_EXTRA, batch_rows=500, dry_run=True))
        section = Section(f"3. Memory: peak RSS at {small[1]:,} and {large[1]:,} rows")
        section.lines += _setup_lines(
            emu,
            MEMORY_EXTRA,
            [
                "Each load runs in a fresh process; peak RSS is its `ru_maxrss` at exit (after importing Airflow, "
                "the provider, psycopg and requests, which every load pays). Default `fetch_size` 5000 and "
                f"`max_in_flight` {IN_FLIGHT} (so up to {IN_FLIGHT} batches in flight).",
                "Both loads send `dryRun: true`, so the emulator validates but stores nothing: it keeps the runs "
                "short and does not change the client's work (one more key in the body).",
            ],
        )
    section.lines += _memory_table(runs, small[1], large[1])
    section.goals, section.runs = _memory_goals(runs, small[1], large[1]), runs
    return section


def _peak_rss(runs: list[Run], variant: str, rows: int) -> Spread:
    return spread(of_variant(runs, variant, rows), lambda r: r.peak_rss_mb)


def _memory_table(runs: list[Run], small: int, large: int) -> list[str]:
    rows = []
    for variant in ("provider", "naive"):
        base = spread(of_variant(runs, variant, small) + of_variant(runs, variant, large), lambda r: r.rss_before_mb)
        at_small, at_large = _peak_rss(runs, variant, small), _peak_rss(runs, variant, large)
        rows.append(
            [
                variant,
                base.fmt(".0f"),
                at_small.fmt(".0f"),
                at_large.fmt(".0f"),
                f"{at_large.median / at_small.median - 1:+.1%}",
                spread(of_variant(runs, variant, large), lambda r: r.rows_per_s).fmt(),
            ]
        )
    headers = ("load", "RSS after imports MiB", f"peak RSS {small:,} rows MiB", f"peak RSS {large:,} rows MiB")
    return table((*headers, "growth", f"rows/s at {large:,}"), rows)


def _memory_goals(runs: list[Run], small: int, large: int) -> list[Goal]:
    p_small, p_large = _peak_rss(runs, "provider", small).median, _peak_rss(runs, "provider", large).median
    n_small, n_large = _peak_rss(runs, "naive", small).median, _peak_rss(runs, "naive", large).median
    growth = p_large / p_small - 1
    per_row = (n_large - n_small) * 1024 / max(large - small, 1)
    return [
        Goal(
            "3. Memory",
            f"peak RSS at {large:,} rows within {FLAT_MEMORY:.0%} of {small:,}",
            f"{p_small:.0f} -> {p_large:.0f} MiB ({growth:+.1%})",
            growth <= FLAT_MEMORY,
            ""
            if growth <= FLAT_MEMORY
            else f"{missed_by(growth, FLAT_MEMORY, higher_is_better=False)} of the allowance",
        ),
        Goal(
            "3. Memory",
            "(naive baseline, for comparison)",
            f"{n_small:.0f} -> {n_large:.0f} MiB ({n_large / n_small - 1:+.0%}, ~{per_row:.1f} KiB per row)",
            None,
        ),
    ]


# --- 4. larger limits ------------------------------------------------------------------------------

LARGER_EXTRA = {"max_rows_per_request": 2000, "max_request_bytes": 1_000_000}
LARGER_ROWS, LARGER_BYTES = LARGER_EXTRA["max_rows_per_request"], LARGER_EXTRA["max_request_bytes"]


def _expected_requests(rows: int) -> int:
    """Requests for ``rows`` if every request carried LARGER_ROWS rows (no byte-cap splits)."""
    return math.ceil(rows / LARGER_ROWS)


def larger_limits(bench: Bench, table_: Table) -> Section:
    """LARGER_ROWS rows / LARGER_BYTES per request at 100 ms latency: rows/s and how often the byte cap closed a batch."""
    with running_emulator(emulator_args(latency_ms=100, max_rows=LARGER_ROWS)) as emu:
        runs = _paired_runs(bench, emu, table_, LARGER_EXTRA, batch_rows=LARGER_ROWS)
        section = Section(
            f"4. Larger limits: {LARGER_ROWS} rows and {LARGER_BYTES / 1e6:.0f} MB per request, 100 ms latency"
        )
        section.lines += _setup_lines(
            emu,
            LARGER_EXTRA,
            [f"Table `{table_[0]}` ({table_[1]:,} rows); the naive loop posts {LARGER_ROWS}-row batches."],
        )
    section.lines += table(THROUGHPUT_HEADERS, throughput_rows(runs, ("provider", "naive")))
    section.lines += ["CPU during the loads:", ""]
    section.lines += table(CPU_HEADERS, cpu_rows(runs, ("provider", "naive")))
    section.lines += _split_lines(of_variant(runs, "provider"))
    section.lines += _larger_reading(of_variant(runs, "provider"))
    section.goals, section.runs = _larger_goals(runs), runs
    return section


def _split_lines(provider: list[Run]) -> list[str]:
    run = provider[0]
    by_rows = _expected_requests(run.rows)
    per_row = run.bytes_received / max(run.rows, 1)
    fits = "stay under" if LARGER_ROWS * per_row < LARGER_BYTES else "would pass"
    mb = f"{LARGER_BYTES / 1e6:.0f} MB"
    return [
        f"Requests sent by the provider: {run.requests} for {run.rows:,} rows; {by_rows} if every request carried "
        f"{LARGER_ROWS} rows, so the {mb} byte cap closed **{run.requests - by_rows}** batch(es) early. Mean body "
        f"{run.bytes_received / max(run.requests, 1) / 1000:,.0f} kB, ~{per_row:,.0f} bytes per encoded `sale` row: "
        f"{LARGER_ROWS} rows ({LARGER_ROWS * per_row / 1e6:.2f} MB) {fits} {mb}.",
        "",
    ]


def _larger_reading(provider: list[Run]) -> list[str]:
    rate = spread(provider, lambda r: r.rows_per_s).median
    client = spread(provider, lambda r: r.cpu_us_per_row("client")).median
    return [
        f"At {LARGER_ROWS} rows per request the API's own ceiling is 50 x {LARGER_ROWS} = {50 * LARGER_ROWS:,} "
        "rows/s, beyond what one process "
        f"can encode: the client spends {client:.1f} µs of CPU per row ({1e6 / client:,.0f} rows per CPU-second). "
        f"The provider reached {rate:,.0f} rows/s. " + _emulator_bound(provider, [], None),
        "",
    ]


def _larger_goals(runs: list[Run]) -> list[Goal]:
    provider, naive = of_variant(runs, "provider"), of_variant(runs, "naive")
    rate = spread(provider, lambda r: r.rows_per_s)
    speedup = rate.median / spread(naive, lambda r: r.rows_per_s).median
    splits = provider[0].requests - _expected_requests(provider[0].rows)
    return [
        Goal(
            "4. Larger limits",
            f"rows/s at {LARGER_ROWS} rows/request (no target)",
            f"{rate.fmt()} rows/s, {speedup:.1f}x naive",
            None,
            f"requests: {provider[0].requests}, byte-cap splits: {splits}",
        )
    ]


def appendix(sections: Sequence[Section]) -> list[str]:
    """Every run of every scenario, in the order they ran."""
    lines = ["## Appendix: every run", ""]
    for section in sections:
        if section.runs:  # scenario 5 lists its runs in its own table
            lines += [f"**{section.title}**", "", *runs_detail(section.runs)]
    return lines
