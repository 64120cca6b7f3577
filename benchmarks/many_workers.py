"""Scenario 5 of issue 11, one tenant and many workers. K worker processes APPEND their own rows into one
tenant at once. Each worker paces itself (adaptive), or all of them draw from one request budget: in
Redis (shared), or in a file of this host (host, the default)."""

from __future__ import annotations

import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from benchmarks.common import PROBE_MARKER, REPO, TOKEN, env_var
from benchmarks.emulator_proc import EmulatorProcess, emulator_args, running_emulator
from benchmarks.fleet import BARRIER_TIMEOUT
from benchmarks.harness import Bench, tree_cpu
from benchmarks.report import Goal, Section, table
from benchmarks.warehouse import connect
from peak_provider.api import MAX_ROWS_PER_REQUEST, REQUESTS_PER_SECOND
from peak_provider.ratecontrol import AdaptivePacer, HostSlots, budget_key, host_budget_dir
from tests.processes import stop_tree
from tests.redis_server import MISSING, REDIS_SERVER, RedisServer, redis_server

API_RPS = REQUESTS_PER_SECOND
API_ROWS_PER_S = API_RPS * MAX_ROWS_PER_REQUEST
#: The pacer's first pause after a throttle without ``Retry-After`` (jittered down to half of it).
BACKOFF = inspect.signature(AdaptivePacer).parameters["backoff"].default
LATENCY_MS = 100
MODES = ("token-bucket", "fixed-window")
REDIS_CONN_ID = "bench_redis"
SHARED, HOST, ADAPTIVE = "shared budget", "host budget", "adaptive"
CONTROLS = (SHARED, HOST, ADAPTIVE)
#: The connection extras of each rate control (the host budget is the default).
CONTROL_EXTRA: dict[str, dict[str, Any]] = {
    SHARED: {"rate_limit_conn_id": REDIS_CONN_ID},
    HOST: {},
    ADAPTIVE: {"rate_limit_scope": "process"},
}
#: Goals per rate control: (least share of the 25,000 rows/s ceiling, most 429s as a share of requests).
TARGETS = {SHARED: (0.95, 0.0), HOST: (0.95, 0.0), ADAPTIVE: (0.85, 0.05)}
HEAD = 2.0  # seconds of a load counted as its start-up in the "why" of a missed goal
BUSY_OTHER = 0.25  # cores used by processes outside the benchmark above which a load's figures are flagged
FLEET_TIMEOUT = 900  # seconds for one fleet; a fleet takes about 30 s when nothing goes wrong


@dataclass
class FleetRun:
    """One load of K workers into one tenant, and what the emulator saw of it."""

    workers: int
    control: str
    mode: str
    rows_expected: int
    rows_accepted: int  # confirmed to the workers (sum of their summaries)
    rows_stored: int  # in the emulator's object: APPEND stores a row sent twice twice
    window: float  # first request's arrival to the last request's arrival plus the latency
    requests: int
    status_429: int
    errors: list[str]
    waits: list[float]  # throttle_wait_seconds of each worker that reported one
    phase_rps: tuple[float, float, float]  # 200s per second: first HEAD s, middle, after the first worker finished
    throttled_seconds: tuple[int, float, float]  # seconds with a 429; 200s in them; 200s in the seconds after
    tail: float  # seconds from the first worker finishing to the last answer
    cores: dict[str, float]  # from the workers' release to their exit: machine, workers, emulator, other

    @property
    def rows_per_s(self) -> float:
        return self.rows_accepted / self.window if self.window > 0 else 0.0

    @property
    def ceiling_share(self) -> float:
        return self.rows_per_s / API_ROWS_PER_S

    @property
    def share_429(self) -> float:
        return self.status_429 / max(self.requests, 1)

    @property
    def exact(self) -> bool:
        """Every row stored exactly once."""
        return self.rows_stored == self.rows_expected

    def met(self) -> bool:
        least, most = TARGETS[self.control]
        return self.ceiling_share >= least and self.share_429 <= most and not self.errors and self.exact


def many_workers(bench: Bench, table_: tuple[str, int], rows: int, workers: Sequence[int]) -> Section:
    """K = ``workers`` processes x {shared budget, host budget, adaptive} x {token bucket, fixed window}, one
    run each."""
    if REDIS_SERVER is None:
        raise RuntimeError(MISSING)
    rows = min(rows, table_[1])
    with connect(bench.pg) as conn:  # each worker reads only its slice, as from its own table
        conn.execute(f"CREATE INDEX IF NOT EXISTS {table_[0]}_sale_id ON {table_[0]} (sale_id)")
        conn.execute(f"ANALYZE {table_[0]}")
    runs: list[FleetRun] = []
    commands = []
    with redis_server() as redis:
        for mode in MODES:
            with running_emulator(emulator_args(latency_ms=LATENCY_MS, rate_limit_mode=mode)) as emu:
                commands.append(emu.command)
                for control in CONTROLS:
                    for k in workers:
                        run = _measure(bench, emu, redis, control, mode, k, table_[0], rows)
                        _progress(run)
                        runs.append(run)
    section = Section(
        f"5. One tenant, many workers: {', '.join(map(str, workers))} worker processes, {LATENCY_MS} ms latency, "
        f"{API_RPS} requests/s"
    )
    section.lines += _setup_lines(commands, table_[0], rows, workers)
    section.lines += table(HEADERS, [_row(r) for r in runs])
    section.lines += _reading(runs)
    section.goals = [_goal(runs, control, mode) for control in CONTROLS for mode in MODES]
    return section


def _measure(
    bench: Bench,
    emu: EmulatorProcess,
    redis: RedisServer,
    control: str,
    mode: str,
    workers: int,
    table_name: str,
    rows: int,
) -> FleetRun:
    """Reset the emulator and the budgets, run one fleet, and read the emulator's request log."""
    emu.reset()
    client = redis.client()
    try:
        client.flushall()
    finally:
        client.close()
    HostSlots(budget_key(emu.url, TOKEN), API_RPS).path.unlink(missing_ok=True)
    bench.quiet.wait()
    env = bench.probe_env(emu, CONTROL_EXTRA[control])
    env[env_var(REDIS_CONN_ID)] = json.dumps({"conn_type": "redis", "host": redis.host, "port": redis.port})
    servers = [emu.pid, bench.pg_pid, *([redis.process.pid] if redis.process else [])]
    before = {pid: tree_cpu(pid) for pid in servers}
    result = run_fleet({"table": table_name, "rows": rows, "workers": workers}, env)
    served = {pid: tree_cpu(pid) - before[pid] for pid in servers}
    log = emu.request_log()
    reports = result["workers"]
    arrivals = [float(e["t"]) for e in log]
    start = min(arrivals, default=0.0)
    end = max(arrivals, default=0.0) + LATENCY_MS / 1000
    first_end = min(float(r["ended"]) for r in reports)
    window = end - start if arrivals else 0.0
    return FleetRun(
        workers=workers,
        control=control,
        mode=mode,
        rows_expected=rows,
        rows_accepted=sum(int(r.get("rows_accepted", 0)) for r in reports),
        rows_stored=emu.stored_rows(),
        window=window,
        requests=len(log),
        status_429=sum(1 for e in log if e["status"] == 429),
        errors=[r["error"] for r in reports if r.get("error")],
        waits=[float(r["throttle_wait_seconds"]) for r in reports if "throttle_wait_seconds" in r],
        phase_rps=_phase_rates([float(e["t"]) for e in log if e["status"] == 200], start, end, first_end),
        throttled_seconds=_throttled_seconds(log),
        tail=max(0.0, end - first_end),
        cores=_cores(result, served[emu.pid], sum(served.values())),
    )


def _cores(result: dict[str, Any], emulator: float, servers: float) -> dict[str, float]:
    """Average cores used while the workers ran: the machine, the workers, the emulator, and processes
    that are not part of the benchmark (the machine less workers, emulator, PostgreSQL and Redis)."""
    seconds = max(float(result["seconds"]), 1e-9)
    machine, workers = float(result["cpu"]["machine"]), float(result["cpu"]["workers"])
    return {
        "machine": machine / seconds,
        "workers": workers / seconds,
        "emulator": emulator / seconds,
        "other": max(0.0, machine - workers - servers) / seconds,
    }


def _throttled_seconds(log: Sequence[dict[str, Any]]) -> tuple[int, float, float]:
    """The wall-clock seconds (of arrival plus latency, when the limit is checked) that had a 429. Returns
    how many there were, the 200s they had on average, and the 200s of the seconds after them (those not
    throttled themselves) on average."""
    accepted: dict[int, int] = {}
    throttled = set()
    for entry in log:
        second = int(float(entry["t"]) + LATENCY_MS / 1000)
        if entry["status"] == 200:
            accepted[second] = accepted.get(second, 0) + 1
        elif entry["status"] == 429:
            throttled.add(second)
    after = [s + 1 for s in throttled if s + 1 not in throttled and s + 1 in accepted]
    return (
        len(throttled),
        statistics.mean(accepted.get(s, 0) for s in throttled) if throttled else 0.0,
        statistics.mean(accepted[s] for s in after) if after else 0.0,
    )


def _phase_rates(accepted: list[float], start: float, end: float, first_end: float) -> tuple[float, float, float]:
    """Accepted requests per second in the first HEAD seconds, in the middle, and after the first worker ended."""
    head_end = min(start + HEAD, end)
    tail_start = min(max(first_end, head_end), end)
    bounds = ((start, head_end), (head_end, tail_start), (tail_start, end))
    rates = []
    for low, high in bounds:
        count = sum(1 for t in accepted if low <= t < high or (high == end and t == high))
        rates.append(count / (high - low) if high - low > 0 else 0.0)
    return rates[0], rates[1], rates[2]


def run_fleet(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """``python -m benchmarks.fleet SPEC`` in its own session; the session is stopped whatever happens."""
    cmd = [sys.executable, "-m", "benchmarks.fleet", json.dumps(spec)]
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True
        )
        try:
            out, _ = proc.communicate(timeout=FLEET_TIMEOUT + BARRIER_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the fleet {spec} took over {FLEET_TIMEOUT + BARRIER_TIMEOUT:.0f} s") from None
        finally:
            stop_tree([proc], grace=10)
        lines = [line for line in out.splitlines() if line.startswith(PROBE_MARKER)]
        if proc.returncode != 0 or not lines:
            stderr.seek(0)
            raise RuntimeError(f"the fleet {spec} failed (exit {proc.returncode}):\n{stderr.read()[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(PROBE_MARKER) :])
    return result


def _progress(run: FleetRun) -> None:
    print(
        f"[{datetime.now():%H:%M:%S}]   {run.control}, {run.mode}, K={run.workers}: {run.ceiling_share:.1%} of the "
        f"ceiling, {run.status_429} x 429 ({run.share_429:.1%}), {len(run.errors)} failed workers",
        file=sys.stderr,
        flush=True,
    )


def _setup_lines(commands: Sequence[str], table_name: str, rows: int, workers: Sequence[int]) -> list[str]:
    version = subprocess.run([str(REDIS_SERVER), "--version"], capture_output=True, text=True, check=False).stdout
    return [
        *[f"- Emulator: `{command}` (one tenant: every worker shares its limit)" for command in commands],
        f"- Workers: `python -m benchmarks.fleet '<spec>'` imports Airflow once and forks K worker processes, as "
        "Celery's prefork pool does. A barrier releases them together. Each worker runs "
        "`SqlToPeakOperator(resource='sale', operation='APPEND')` with the default connection settings "
        f"(requests_per_second {API_RPS}, max_in_flight 16) on its own `sale_id` slice of the first {rows:,} rows of "
        f"`{table_name}` (indexed on `sale_id`). APPEND is resumable by default, so each slice is read in "
        "primary-key order.",
        f"- *{ADAPTIVE}*: the extra `rate_limit_scope=process`: each process paces itself and backs off when "
        f"throttled. *{HOST}*: the default (`rate_limit_scope=host`): every process of this host draws from one "
        f"schedule in a file under `{host_budget_dir()}`, and each backs off when throttled. *{SHARED}*: "
        f"the extra `rate_limit_conn_id={REDIS_CONN_ID}`, an Airflow `redis` connection "
        f"(`{env_var(REDIS_CONN_ID)}`) to a throwaway "
        f"`{version.split(' v=')[-1].split()[0] if ' v=' in version else 'redis-server'}` server on a free "
        "loopback port (`tests/redis_server.py`). Both budgets are emptied before each load.",
        f"- *rows/s* is the rows confirmed to the workers, divided by the time from the first request's arrival "
        f"to the last request's arrival plus the {LATENCY_MS} ms latency (its answer), both read from the "
        f"emulator's request log (`GET /_emulator/requests`). *429 share* is the 429s over all requests. "
        f"*stored* is the object's rows after the load: APPEND makes a row sent twice visible. "
        f"*pause per worker* is `throttle_wait_seconds` from each worker's summary (median, max). *cores* are "
        "CPU seconds from the workers' release to their exit, over that time: the whole machine, the workers, "
        "the emulator, and *other* processes (the machine less the workers, the emulator, PostgreSQL and "
        "Redis). "
        f"Each combination runs once, whatever `--runs` says ({len(workers) * len(MODES) * len(CONTROLS)} loads), "
        "to keep the scenario within minutes on 2 cores.",
        "",
    ]


HEADERS = (
    "K workers",
    "rate control",
    "limit mode",
    "rows/s",
    "of 25,000",
    "seconds",
    "requests",
    "429s",
    "429 share",
    "failed workers",
    "stored / expected",
    "pause per worker s",
    "cores: machine / workers / emulator / other",
)


def _row(run: FleetRun) -> list[str]:
    waits = f"{statistics.median(run.waits):.1f}, {max(run.waits):.1f}" if run.waits else "—"
    return [
        str(run.workers),
        run.control,
        run.mode,
        f"{run.rows_per_s:,.0f}",
        f"{run.ceiling_share:.1%}",
        f"{run.window:.1f}",
        f"{run.requests:,}",
        str(run.status_429),
        f"{run.share_429:.1%}",
        str(len(run.errors)),
        f"{run.rows_stored:,} / {run.rows_expected:,}",
        waits,
        " / ".join(f"{run.cores[name]:.2f}" for name in ("machine", "workers", "emulator", "other")),
    ]


def _reading(runs: Sequence[FleetRun]) -> list[str]:
    lines = []
    busy = [r for r in runs if r.cores["other"] > BUSY_OTHER]
    if busy:
        which = ", ".join(f"K={r.workers} {r.control} {r.mode} ({r.cores['other']:.2f})" for r in busy)
        lines += [
            f"**{len(busy)} of {len(runs)} loads ran while processes outside the benchmark used more than "
            f"{BUSY_OTHER} cores**: {which}. The emulator and the workers then share the 2 cores with them, and "
            "these figures are lower than on a quiet machine.",
            "",
        ]
    errors = [(r, e) for r in runs for e in r.errors]
    if errors:
        lines += ["Worker errors (first 5):", ""]
        lines += [f"- K={r.workers}, {r.control}, {r.mode}: `{e[:300]}`" for r, e in errors[:5]]
        lines.append("")
    lines += [
        f"With the *{SHARED}* every request slot comes from one evenly spaced schedule in Redis, and with the "
        f"*{HOST}* from one in a file that every process of this host locks for each draw. K workers together "
        "send as one client, and the limit's mode does not matter. The host budget also cuts the rate of a "
        "throttled process (another host may share the tenant); Redis's does not. With *adaptive* control each "
        f"process starts at the full {API_RPS} requests/s. A 429 cuts its rate to {AdaptivePacer.BETA:.0%} (or to "
        "what the tenant admitted of its requests in the last second, if lower) and pauses all its threads, "
        "and the rate then climbs back (CUBIC). The token bucket answers `Retry-After: 1`, so the pause is 1 s "
        "plus up to 0.2 s of jitter. The fixed window answers without `Retry-After`, so the pause is a "
        f"jittered exponential backoff ({BACKOFF / 2:g} to {BACKOFF:g} s at first, doubling while the throttles go "
        "on). K processes that each probe upward keep finding the limit, which costs 429s and paused time as K "
        "grows.",
        "",
        f"A fixed window refuses request {API_RPS + 1} of a wall-clock second and gives no burst allowance. At "
        f"1.01/{API_RPS} s spacing about half of the seconds hold {API_RPS} requests, so a request that arrives a few "
        "milliseconds off its slot can be the 51st, even with the shared budget. Thread wake-ups and CPU "
        "contention while 16 workers start are enough. A token bucket absorbs that jitter with its burst "
        "capacity. Each 429 pauses the process (with a budget, every process that draws from it) and cuts its "
        "rate (with Redis's budget only when 429s repeat with no success between them), so one 429 costs far "
        "more than one request.",
        "",
    ]
    return lines


def _goal(runs: Sequence[FleetRun], control: str, mode: str) -> Goal:
    least, most = TARGETS[control]
    mine = [r for r in runs if r.control == control and r.mode == mode]
    limit = "0 x 429" if most == 0 else f"<= {most:.0%} 429s"
    ks = ", ".join(str(r.workers) for r in mine)
    measured = "; ".join(
        f"K={r.workers}: {r.ceiling_share:.1%}, {r.status_429} x 429 ({r.share_429:.1%})"
        + (f", {len(r.errors)} failed" if r.errors else "")
        + ("" if r.exact else f", {r.rows_stored:,} of {r.rows_expected:,} rows stored")
        for r in mine
    )
    why = " ".join(_why(r) for r in mine if not r.met())
    return Goal(
        f"5. Many workers ({control}, {mode})",
        f">= {least:.0%} of {API_ROWS_PER_S:,} rows/s and {limit} at K = {ks}",
        measured,
        all(r.met() for r in mine),
        why,
    )


def _why(run: FleetRun) -> str:
    """By how much a fleet missed its goal, and what the request log and the summaries say about why."""
    least, most = TARGETS[run.control]
    misses = []
    if run.ceiling_share < least:
        misses.append(f"{(least - run.ceiling_share) * 100:.1f} points under {least:.0%}")
    if run.share_429 > most:
        over = f"{(run.share_429 - most) * 100:.1f} points over {most:.0%}" if most else "not 0"
        misses.append(f"429s {over}")
    if run.errors:
        misses.append(f"{len(run.errors)} workers failed")
    if not run.exact:
        misses.append(f"{run.rows_stored:,} rows stored for {run.rows_expected:,}")
    head, middle, tail = run.phase_rps
    waits = f"{statistics.mean(run.waits):.1f} s on average" if run.waits else "unknown"
    tail_text = f", {tail:.1f} in the last {run.tail:.1f} s after the first worker finished" if run.tail >= 1 else ""
    seconds, in_them, after_them = run.throttled_seconds
    throttled = ""
    if seconds:
        throttled = (
            f" The 429s fell in {seconds} wall-clock second(s), which accepted {in_them:.0f} requests on average; "
            f"the seconds after them accepted {after_them:.0f}."
        )
    return (
        f"K={run.workers}: {', '.join(misses)}. Accepted requests/s: {head:.1f} in the first {HEAD:.0f} s, "
        f"{middle:.1f} after that{tail_text}.{throttled} Throttle pauses per worker: {waits} of the "
        f"{run.window:.1f} s. "
        f"Cores busy: {run.cores['machine']:.2f} of {os.cpu_count()}, of which processes outside the benchmark "
        f"{run.cores['other']:.2f}, the emulator {run.cores['emulator']:.2f}."
    )
