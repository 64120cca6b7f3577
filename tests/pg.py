"""A throwaway PostgreSQL server started from the Debian binaries (``scripts/ensure-postgres.sh``)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: run scripts/ensure-postgres.sh (make test does)")
    return found[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[dict[str, object]]:
    """Yield connection parameters of a fresh server (trust auth, user ``postgres``, db ``warehouse``)."""
    root = Path(tempfile.mkdtemp(prefix="peak-pg-"))
    data = root / "data"
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    run = lambda *cmd: subprocess.run([*as_postgres, *cmd], check=True, capture_output=True)  # noqa: E731
    run(pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
    run(
        pg_bin("pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "log"),
        "-w",
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
        "start",
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                run(pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "warehouse")
                break
            except subprocess.CalledProcessError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        yield {"host": "127.0.0.1", "port": port, "user": "postgres", "dbname": "warehouse"}
    finally:
        subprocess.run(
            [*as_postgres, pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def load_sql(params: dict[str, object], dbname: str, path: Path, user: str | None = None) -> None:
    """Run the SQL file ``path`` in ``dbname`` with psql (stopping at the first error), as ``user``."""
    target = ["-h", str(params["host"]), "-p", str(params["port"]), "-U", user or str(params["user"]), "-d", dbname]
    done = subprocess.run(
        [pg_bin("psql"), "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "--quiet", *target, "-f", str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"psql -f {path} failed: {done.stderr[-3000:]}"


def postgres_conn_json(params: dict[str, object]) -> str:
    """An ``AIRFLOW_CONN_*`` value (a ``postgres`` connection) for a server of :func:`postgres_server`."""
    conn = {"conn_type": "postgres", "host": params["host"], "port": params["port"], "login": params["user"]}
    return json.dumps({**conn, "schema": params["dbname"]})
