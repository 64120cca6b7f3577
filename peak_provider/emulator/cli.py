"""``peak-emulator``: run the emulator in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from peak_provider.emulator.config import (
    DEFAULT_FAILED_ENTRIES,
    DEFAULT_PORT,
    DEFAULT_RATE_LIMIT_MODE,
    DEFAULT_RATE_LIMIT_SCOPE,
    DEFAULT_SOLUTIONS,
    DEFAULT_UPSERT,
    FAILED_ENTRY_SHAPES,
    RATE_LIMIT_MODES,
    RATE_LIMIT_SCOPES,
    UPSERT_MODES,
    Limits,
    Solution,
)
from peak_provider.emulator.faults import Faults
from peak_provider.emulator.server import Emulator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peak-emulator",
        description="Local, offline emulator of the Peak ingestion API (for DAG development and tests).",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback only unless --allow-remote)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port; 0 picks a free one (default {DEFAULT_PORT}, not Airflow's 8080)",
    )
    p.add_argument("--allow-remote", action="store_true", help="allow binding to a non-loopback address")
    p.add_argument(
        "--token", action="append", default=[], help="accepted API token (repeatable); generated when omitted"
    )
    p.add_argument(
        "--solution",
        action="append",
        default=[],
        metavar="NAME:APPLICATION[:PREFIX[:SUFFIX[:TIMESTAMP_FORMAT]]]",
        help="a solution (repeatable); default INV_OOTB:inventory:INV_:_OOTB and QP_OOTB:b2c_pricing:QP_:_OOTB",
    )
    p.add_argument("--db", default=":memory:", help="sqlite file to store rows in (default in memory)")
    limits = Limits()  # the API's documented limits (peak_provider.api)
    p.add_argument(
        "--max-rows",
        type=int,
        default=limits.max_rows_per_request,
        help=f"rows per request limit, 0 disables ({limits.max_rows_per_request})",
    )
    p.add_argument(
        "--max-bytes",
        type=int,
        default=limits.max_request_bytes,
        help=f"body size limit, 0 disables ({limits.max_request_bytes})",
    )
    p.add_argument(
        "--rps",
        type=float,
        default=limits.requests_per_second,
        help=f"requests per second (per --rate-limit-scope), 0 disables ({limits.requests_per_second})",
    )
    p.add_argument(
        "--rate-limit-mode",
        choices=RATE_LIMIT_MODES,
        default=DEFAULT_RATE_LIMIT_MODE,
        help="token-bucket: 429 with Retry-After; fixed-window: at most --rps per wall-clock second, "
        "429 without Retry-After (%(default)s)",
    )
    p.add_argument(
        "--rate-limit-scope",
        choices=RATE_LIMIT_SCOPES,
        default=DEFAULT_RATE_LIMIT_SCOPE,
        help="tenant: one budget shared by every token and solution; token: one budget per token (%(default)s)",
    )
    p.add_argument(
        "--upsert",
        choices=UPSERT_MODES,
        default=DEFAULT_UPSERT,
        help="UPSERT of a stored key: replace the whole row, or merge the sent columns into it (%(default)s)",
    )
    p.add_argument(
        "--failed-entries",
        choices=FAILED_ENTRY_SHAPES,
        default=DEFAULT_FAILED_ENTRIES,
        help="what each 'failed' entry of an ingest answer names its row by: its index and the row, "
        "the index only, or the row only (%(default)s)",
    )
    p.add_argument(
        "--base-path",
        action="append",
        default=[],
        help="extra path prefix to serve the API under, besides / (repeatable; default /ingestion-api)",
    )
    p.add_argument("--access-log", metavar="FILE|-", help="write one line per request to FILE or stdout (-)")
    f = p.add_argument_group("fault injection (deterministic for a given --seed and request order)")
    f.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency added to each request")
    f.add_argument("--jitter-ms", type=float, default=0.0, help="uniform extra latency 0..N ms")
    f.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500/503 before processing")
    f.add_argument("--error-status", type=int, action="append", default=[], help="status for --error-rate (repeatable)")
    f.add_argument("--throttle-rate", type=float, default=0.0, help="fraction that start a burst of 429s")
    f.add_argument("--throttle-burst", type=int, default=1, help="429s per throttle burst (1)")
    f.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds of injected 429s (1)")
    f.add_argument("--drop-rate", type=float, default=0.0, help="fraction closed without a response")
    f.add_argument("--slow-rate", type=float, default=0.0, help="fraction delayed by --slow-seconds")
    f.add_argument("--slow-seconds", type=float, default=5.0, help="delay of slow requests (5)")
    f.add_argument(
        "--lost-response-rate", type=float, default=0.0, help="fraction stored but answered by a closed connection"
    )
    f.add_argument("--seed", type=int, default=0, help="fault RNG seed (0)")
    return p


def _faults(args: argparse.Namespace) -> Faults:
    return Faults(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        error_rate=args.error_rate,
        error_statuses=tuple(args.error_status) or (500, 503),
        throttle_rate=args.throttle_rate,
        throttle_burst=args.throttle_burst,
        retry_after_seconds=args.retry_after,
        drop_rate=args.drop_rate,
        slow_rate=args.slow_rate,
        slow_seconds=args.slow_seconds,
        lost_response_rate=args.lost_response_rate,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = sys.stdout
    try:
        solutions = [Solution.parse(s) for s in args.solution] or list(DEFAULT_SOLUTIONS)
        faults = _faults(args)
        tokens = args.token or [secrets.token_urlsafe(24)]
        access_log: str | IO[str] | None = out if args.access_log == "-" else args.access_log
        emulator = Emulator(
            tokens=tokens,
            solutions=solutions,
            db=args.db,
            limits=Limits(
                args.max_rows or None,
                args.max_bytes or None,
                args.rps or None,
                rate_limit_mode=args.rate_limit_mode,
                rate_limit_scope=args.rate_limit_scope,
            ),
            upsert=args.upsert,
            failed_entries=args.failed_entries,
            faults=faults,
            host=args.host,
            port=args.port,
            base_paths=["", *(args.base_path or ["/ingestion-api"])],
            allow_remote=args.allow_remote,
            access_log=access_log,
        )
        emulator.start()
    except (ValueError, OSError) as exc:
        print(f"peak-emulator: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    _banner(emulator, generated=not args.token, out=out)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        print("peak-emulator: stopped", file=out, flush=True)
    return 0


def _banner(emulator: Emulator, *, generated: bool, out: IO[str]) -> None:
    paths = ", ".join(p or "/" for p in sorted(emulator.app.base_paths, key=len))
    lines = [
        f"Peak ingestion API emulator listening on {emulator.url}",
        f"  base paths: {paths}",
        f"  token{' (generated)' if generated else ''}: {emulator.token}",
        "  solutions: "
        + ", ".join(f"{s.name} ({s.application}, objects {s.prefix}<OBJECT>{s.suffix})" for s in emulator.solutions),
        f"  limits: {_describe(emulator.limits)}",
        f"  UPSERT: {_UPSERT[emulator.upsert]}",
        f"  inspect: {emulator.url}/_emulator/stats  {emulator.url}/_emulator/objects",
        "",
    ]
    for s in emulator.solutions:
        lines.append(f"# {s.name} ({s.application})")
        lines.append(f"AIRFLOW_CONN_PEAK_DEFAULT='{emulator.connection_json(s.name)}'")
    lines.append("")
    lines.append("Press Ctrl+C to stop.")
    print("\n".join(lines), file=out, flush=True)


_UPSERT = {"replace": "the sent row replaces the stored row", "merge": "the sent columns overwrite the stored row's"}


def _describe(limits: Limits) -> str:
    rows = limits.max_rows_per_request or "unlimited"
    size = limits.max_request_bytes or "unlimited"
    rate = (
        f"{limits.requests_per_second:g} requests/s per {limits.rate_limit_scope} ({limits.rate_limit_mode})"
        if limits.requests_per_second
        else "no rate limit"
    )
    return f"{rows} rows and {size} bytes per request, {rate}"
