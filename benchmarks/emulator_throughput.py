"""Measure the emulator's ingestion throughput (rows/s) over loopback HTTP.

Posts pre-encoded 500-row UPSERT batches of ``INV_PRODUCTS_OOTB`` from 2 client threads, each over
its own keep-alive ``requests.Session``. By default the emulator runs in a subprocess
(``python -m peak_provider.emulator``), as it would for DAG development; ``--in-process`` runs it
in this process instead (client and server then share one GIL).

    python benchmarks/emulator_throughput.py [--rows 100000] [--batch 500] [--threads 2] [--in-process]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests

TOKEN = "benchmark-token"
OBJECT = "INV_PRODUCTS_OOTB"


def make_bodies(total: int, batch: int) -> list[bytes]:
    bodies = []
    for start in range(0, total, batch):
        rows = [
            {
                "product_id": f"PROD-{i:08d}",
                "product_name": f"Product {i}",
                "product_description": "A sturdy widget for benchmarking the emulator",
                "product_category": "Widgets",
                "source_id": f"SUP-{i % 97:03d}",
                "pack_size": 12,
                "minimum_order_quantity": 24,
                "product_image_urls": f"https://example.com/img/{i}.jpg",
                "updated_at": "2025-01-15 08:00:00",
            }
            for i in range(start, min(start + batch, total))
        ]
        body = {"solutionName": "INV_OOTB", "data": rows, "operationType": "UPSERT"}
        bodies.append(json.dumps(body).encode())
    return bodies


@contextmanager
def emulator_url(in_process: bool) -> Iterator[str]:
    if in_process:
        from peak_provider.emulator import Emulator, Limits

        with Emulator(tokens=TOKEN, limits=Limits(requests_per_second=0)) as emu:
            yield emu.url
        return
    args = ["--port", "0", "--token", TOKEN, "--rps", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "peak_provider.emulator", *args], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                yield m.group(1)
                break
        else:
            raise RuntimeError("the emulator did not start")
    finally:
        proc.terminate()
        proc.wait(10)


def run(url: str, bodies: list[bytes], threads: int) -> tuple[float, int]:
    endpoint = f"{url}/api/v2/ingest/object/{OBJECT}"
    headers = {"Authorization": TOKEN, "Content-Type": "application/json"}
    accepted = [0] * threads
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with requests.Session() as s:
                for body in bodies[n::threads]:
                    r = s.post(endpoint, data=body, headers=headers, timeout=30)
                    r.raise_for_status()
                    accepted[n] += r.json()["accepted"]
        except BaseException as exc:  # reported below
            errors.append(exc)

    with requests.Session() as s:  # warm-up: table creation, first connection
        s.post(endpoint, data=bodies[0], headers=headers, timeout=30).raise_for_status()
    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed, sum(accepted)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--in-process", action="store_true", help="run the emulator in this process")
    args = p.parse_args()
    bodies = make_bodies(args.rows, args.batch)
    size = sum(map(len, bodies)) / len(bodies)
    with emulator_url(args.in_process) as url:
        elapsed, accepted = run(url, bodies, args.threads)
    mode = "in-process" if args.in_process else "subprocess"
    print(
        f"{accepted} rows in {len(bodies)} requests of {args.batch} rows (~{size / 1000:.0f} KB) from "
        f"{args.threads} threads, emulator {mode}: {elapsed:.2f} s = {accepted / elapsed:,.0f} rows/s "
        f"({len(bodies) / elapsed:.0f} req/s)"
    )


if __name__ == "__main__":
    main()
