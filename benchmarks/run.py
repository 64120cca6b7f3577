"""Benchmark airflow-provider-peak against the API's limits and write ``benchmarks/RESULTS.md``.

    python benchmarks/run.py                 # full run, 3 runs per figure (about 20 minutes on 2 cores)
    python benchmarks/run.py --smoke --output /tmp/RESULTS.md   # tiny tables, 1 run, seconds
    python benchmarks/run.py --scenario many-workers --output /tmp/RESULTS.md   # scenario 5 alone (~12 min)

Starts a throwaway PostgreSQL (``tests/pg.py``), fills realistic b2c ``sale`` tables with
``generate_series``, and for every scenario runs each load in a fresh process against the emulator in
its own process, next to the naive ``get_records`` + sequential POST loop. Scenario 5 runs K worker
processes into one tenant (``many_workers.py``). Needs the PostgreSQL server binaries
(``scripts/ensure-postgres.sh``) and ``redis-server`` (``scripts/ensure-redis.sh``); ``py-spy`` is optional
(the CPU profile).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path[0] == str(Path(__file__).resolve().parent):
    sys.path[0] = str(REPO)  # import ``benchmarks`` and ``tests`` as packages, not this folder's modules
elif str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import many_workers, scenarios  # noqa: E402
from benchmarks.harness import Bench, Quiet  # noqa: E402
from benchmarks.machine import load_average, machine_facts  # noqa: E402
from benchmarks.report import Goal, Section, table  # noqa: E402
from benchmarks.warehouse import create_sale_table, server_version  # noqa: E402
from tests.pg import postgres_server  # noqa: E402

DEFAULT_OUTPUT = REPO / "benchmarks" / "RESULTS.md"
SCENARIOS = ("ceiling", "cpu", "memory", "larger-limits", "many-workers")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny tables and 1 run: checks the harness in seconds")
    p.add_argument("--runs", type=int, default=None, help="runs per figure (default 3, 1 with --smoke)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"results file (default {DEFAULT_OUTPUT})")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of the CPU scenario")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="before each load, wait up to this long for the machine to be idle (default 60, 0 with --smoke)",
    )
    p.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="run only this scenario (repeatable; default all)"
    )
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.runs = args.runs or (1 if args.smoke else 3)
    if args.wait_idle is None:
        args.wait_idle = 0.0 if args.smoke else 60.0
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def create_tables(pg: dict[str, object], sizes: scenarios.Sizes) -> dict[int, tuple[str, int]]:
    tables = {}
    for rows in sorted({sizes.throughput, *sizes.memory}):
        started = time.monotonic()
        tables[rows] = (f"sale_{rows}", rows)
        create_sale_table(pg, f"sale_{rows}", rows)
        log(f"table sale_{rows}: {rows:,} rows in {time.monotonic() - started:.1f} s")
    return tables


def run_scenarios(
    bench: Bench, sizes: scenarios.Sizes, tables: dict[int, tuple[str, int]], args: argparse.Namespace
) -> list[Section]:
    steps = {
        "ceiling": lambda: scenarios.ceiling(bench, tables[sizes.throughput]),
        "cpu": lambda: scenarios.cpu(bench, tables[sizes.throughput], profile=not args.no_profile),
        "memory": lambda: scenarios.memory(bench, tables[sizes.memory[0]], tables[sizes.memory[1]]),
        "larger-limits": lambda: scenarios.larger_limits(bench, tables[sizes.throughput]),
        "many-workers": lambda: many_workers.many_workers(
            bench, tables[sizes.memory[1]], sizes.tenant_rows, sizes.workers
        ),
    }
    sections = []
    for name, step in steps.items():
        if args.scenario and name not in args.scenario:
            continue
        started = time.monotonic()
        log(f"scenario {name} ...")
        sections.append(step())
        log(f"scenario {name} done in {time.monotonic() - started:.0f} s")
    return sections


def goal_lines(goals: Sequence[Goal]) -> list[str]:
    rows = [[g.scenario, g.goal, g.measured, g.verdict, g.why] for g in goals]
    return table(("scenario", "goal", "measured: median (min to max)", "verdict", "why / note"), rows)


def quiet_line(quiet: Quiet) -> str:
    if not quiet.max_wait:
        return "The harness did not wait for an idle machine (`--wait-idle 0`)."
    return (
        f"Before each load the harness waited for the machine to be idle (under {quiet.threshold} cores busy over "
        f"{quiet.window:.0f} s; at most {quiet.max_wait:.0f} s per load and {quiet.budget:.0f} s in all): it waited "
        f"{quiet.waited:.0f} s, and {quiet.gave_up} load(s) started on a busy machine. The *other processes* columns "
        "show what else ran during each load."
    )


def render(
    args: argparse.Namespace, facts: dict[str, str], sections: list[Section], minutes: float, quiet: Quiet
) -> str:
    command = " ".join(["python benchmarks/run.py", *args.argv])
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {minutes:.1f} minutes. "
        f"Every figure is the median of {args.runs} run(s), with (min to max) where there were several.",
        "",
        quiet_line(quiet),
        "",
        "## Machine",
        "",
        *table(("", ""), [[k, v] for k, v in facts.items()]),
        "## Commands",
        "",
        "```console",
        *([f"{command}   # this file"] if args.argv else []),
        "python benchmarks/run.py   # the full run, written to benchmarks/RESULTS.md (what `make bench` runs)",
        "python benchmarks/run.py --smoke --output /tmp/RESULTS.md   # tiny tables, 1 run: the smoke test",
        "python benchmarks/run.py --runs 5 --scenario ceiling --no-profile --wait-idle 0   # other options",
        "python benchmarks/run.py --scenario many-workers --output /tmp/RESULTS.md   # scenario 5 alone",
        "pip install py-spy   # optional: the CPU scenario's profile",
        "```",
        "",
        "Each load is one fresh process, `python -m benchmarks.probe '<spec JSON>'`, with the connections in "
        "`AIRFLOW_CONN_BENCH_WAREHOUSE` (the throwaway PostgreSQL of `tests/pg.py`) and `AIRFLOW_CONN_PEAK_BENCH` "
        "(the emulator). The emulator runs in its own process with the command shown in each section and is reset "
        "(`POST /_emulator/reset`) before every load. *provider* is `SqlToPeakOperator(resource='sale', "
        "sql='SELECT <all 15 sale columns> FROM sale_N')`.execute() with a hand-built context; *naive* is "
        "`DbApiHook.get_records(sql)` then `json.dumps` and sequential `requests` POSTs (keep-alive session) with "
        "the hook's headers and body (`benchmarks/naive.py`).",
        "",
        "## Goals",
        "",
        *goal_lines([g for s in sections for g in s.goals]),
    ]
    for section in sections:
        lines += [f"## {section.title}", "", *section.lines]
    lines += scenarios.appendix(sections)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = scenarios.SMOKE if args.smoke else scenarios.FULL
    started = time.monotonic()
    load_before = load_average()
    with postgres_server() as pg, tempfile.TemporaryDirectory(prefix="peak-bench-airflow-") as airflow_home:
        log(f"PostgreSQL on port {pg['port']}")
        tables = create_tables(pg, sizes)
        bench = Bench(pg, runs=args.runs, airflow_home=airflow_home, quiet=Quiet(max_wait=args.wait_idle))
        facts = machine_facts(server_version(pg))
        sections = run_scenarios(bench, sizes, tables, args)
    facts["Load average (1/5/15 min) at start; at end"] = f"{load_before}; {load_average()}"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    minutes = (time.monotonic() - started) / 60
    args.output.write_text(render(args, facts, sections, minutes, bench.quiet))
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
