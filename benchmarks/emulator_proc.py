"""The Peak emulator in its own process (``python -m peak_provider.emulator``), so it never shares a GIL
with the client under test."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from benchmarks.common import OBJECT, REPO, SOLUTION_SPEC, TOKEN


def emulator_args(
    latency_ms: float = 0, rps: float = 50, max_rows: int = 500, rate_limit_mode: str = "token-bucket"
) -> list[str]:
    """CLI flags of one emulator configuration (the API's defaults unless overridden)."""
    args = ["--port", "0", "--token", TOKEN, "--solution", SOLUTION_SPEC]
    if rate_limit_mode != "token-bucket":
        args += ["--rate-limit-mode", rate_limit_mode]
    if latency_ms:
        args += ["--latency-ms", f"{latency_ms:g}"]
    if rps != 50:
        args += ["--rps", f"{rps:g}"]
    if max_rows != 500:
        args += ["--max-rows", str(max_rows)]
    return args


@dataclass
class EmulatorProcess:
    """A running emulator: its base URL and the control endpoints the harness reads."""

    url: str
    args: list[str]
    pid: int

    @property
    def ingest_url(self) -> str:
        return f"{self.url}/api/v2/ingest/object/{OBJECT}"

    @property
    def command(self) -> str:
        return "python -m peak_provider.emulator " + " ".join(self.args)

    def stats(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/_emulator/stats", timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def request_log(self) -> list[dict[str, Any]]:
        """Every API request since the last reset: ``{"t", "status", ...}`` (``t``: arrival, wall clock)."""
        response = requests.get(f"{self.url}/_emulator/requests", timeout=60)
        response.raise_for_status()
        return list(response.json()["requests"])

    def stored_rows(self) -> int:
        """Rows stored in the benchmark's object (APPEND stores a row sent twice twice)."""
        response = requests.get(f"{self.url}/_emulator/objects", timeout=60)
        response.raise_for_status()
        return sum(int(o["count"]) for o in response.json()["objects"] if o["object"] == OBJECT)

    def reset(self) -> None:
        """Drop stored rows, counters and rate-limit buckets (between measurements)."""
        requests.post(f"{self.url}/_emulator/reset", timeout=60).raise_for_status()


@contextmanager
def running_emulator(args: list[str]) -> Iterator[EmulatorProcess]:
    """Start the emulator CLI with ``args``, wait for its banner, stop it with SIGTERM on exit."""
    cmd = [sys.executable, "-m", "peak_provider.emulator", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        url = _wait_for_url(proc)
        yield EmulatorProcess(url=url, args=args, pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    url = None
    for line in proc.stdout:
        if match := re.search(r"listening on (http://\S+)", line):
            url = match.group(1)
        if line.startswith("Press Ctrl+C"):
            break
    if url is None:
        raise RuntimeError(f"the emulator did not start (exit code {proc.poll()})")
    return url
