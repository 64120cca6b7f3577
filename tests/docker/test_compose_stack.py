"""The compose file's Airflow stack, run for real without a Docker engine.

Every Airflow service of docker/docker-compose.yaml (and the emulator) runs as a local process with that
service's own ``environment`` and ``command``, the local venv standing in for the image. In the stack they
all share one network namespace, so they reach each other and the emulator on localhost, as local processes
do; only what lies outside that namespace is mapped: the two PostgreSQL services become databases of the
test's PostgreSQL, the container paths temporary directories, and the fixed ports free ones. Then: the admin
logs in with the compose file's password, the pool exists, both example DAGs parse, and a backfill loads the
seeded PostgreSQL warehouse into the emulator, rejecting the demo's invalid rows into the rejects volume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.airflow_services import admin_cursor, free_port, stop_process_group
from tests.pg import load_sql

pytestmark = [pytest.mark.airflow3, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "docker-compose.yaml"
SEED = REPO / "docker" / "warehouse" / "init.sql"
BIN = Path(sys.executable).parent
COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
DAY = "2025-03-02"  # a backfill's logical date D loads [D, D+1): the day with the demo's invalid rows


def wait_for(check: Callable[[], Any], what: str, timeout: float, logs: Path) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the services' log tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*.log")))
    pytest.fail(f"timed out waiting for {what}\n{tails}")


@pytest.fixture
def stack(postgres: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    pg_port = postgres["port"]
    api_port, emu_port = free_port(), free_port()
    dbs = {"airflow": "compose_airflow", "warehouse": "compose_warehouse"}
    with admin_cursor(postgres) as cur:
        for role, db in dbs.items():
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if not cur.fetchone():
                cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{role}'")
            cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {db} OWNER {role}")
    load_sql(postgres, dbs["warehouse"], SEED, user="warehouse")
    paths = {f"/opt/airflow/{d}": tmp_path / d for d in ("auth", "peak-rejects", "emulator")}
    for path in paths.values():
        path.mkdir()

    def outside(value: str) -> str:
        """Map what lies outside the shared namespace: container paths and the fixed ports."""
        for container_path, local in paths.items():
            value = value.replace(container_path, str(local))
        value = value.replace("localhost:8080", f"localhost:{api_port}").replace("--port 8080", f"--port {api_port}")
        return value.replace("127.0.0.1:8787", f"127.0.0.1:{emu_port}").replace("--port=8787", f"--port={emu_port}")

    def env_of(name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({k: outside(str(v)) for k, v in (services[name].get("environment") or {}).items()})
        if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in env:
            url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
            assert url.endswith("@postgres:5432/airflow"), url
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url.replace(
                "@postgres:5432/airflow", f"@{postgres['host']}:{pg_port}/{dbs['airflow']}"
            )
        if "AIRFLOW_CONN_PEAK_WAREHOUSE" in env:
            conn = json.loads(env["AIRFLOW_CONN_PEAK_WAREHOUSE"])
            assert (conn["host"], conn["port"], conn["schema"]) == ("warehouse", 5432, "warehouse")
            conn.update(host=postgres["host"], port=pg_port, schema=dbs["warehouse"])
            env["AIRFLOW_CONN_PEAK_WAREHOUSE"] = json.dumps(conn)
        env.update(
            AIRFLOW_HOME=str(tmp_path / "airflow"),
            AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),  # the compose file mounts dags/ there
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT=str(free_port()),
            PATH=f"{BIN}:{os.environ['PATH']}",
        )
        return env

    def command_of(name: str) -> list[str]:
        cmd = [outside(str(c)) for c in services[name]["command"]]
        return cmd if cmd[0] in ("bash", "python") else ["airflow", *cmd]  # the image's entrypoint does the same

    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> None:
        with (tmp_path / f"{name}.log").open("w") as log:
            procs.append(
                subprocess.Popen(
                    command_of(name),
                    env=env_of(name),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=tmp_path,
                )
            )

    try:
        start("peak-emulator")
        wait_for(
            lambda: requests.get(f"http://127.0.0.1:{emu_port}/_emulator/health", timeout=2).ok,
            "the emulator",
            30,
            tmp_path,
        )
        init = subprocess.run(command_of("airflow-init"), env=env_of("airflow-init"), capture_output=True, text=True)
        assert init.returncode == 0, init.stdout[-2000:] + init.stderr[-2000:]
        for name in COMPONENTS:
            start(name)
        api = f"http://localhost:{api_port}"
        wait_for(lambda: requests.get(f"{api}/api/v2/monitor/health", timeout=2).ok, "the api-server", 120, tmp_path)
        yield {
            "api": api,
            "emulator": f"http://127.0.0.1:{emu_port}",
            "env": env_of("airflow-scheduler"),
            "rejects": paths["/opt/airflow/peak-rejects"],
            "warehouse": {**postgres, "dbname": dbs["warehouse"]},
            "logs": tmp_path,
        }
    finally:
        stop_process_group(*procs)
        with admin_cursor(postgres) as cur:
            for db in dbs.values():
                cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_compose_stack_logs_in_parses_and_backfills_the_warehouse(stack):
    import psycopg2

    api, logs = stack["api"], stack["logs"]
    token = requests.post(f"{api}/auth/token", json={"username": "admin", "password": "admin"}, timeout=10)
    assert token.status_code == 201, token.text
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    pools = requests.get(f"{api}/api/v2/pools", headers=auth, timeout=10).json()["pools"]
    assert {p["name"]: p["slots"] for p in pools}["peak_api"] == 4

    dag_ids = {"peak_inventory_incremental", "peak_b2c_pricing_incremental"}

    def parsed() -> bool:
        dags = requests.get(f"{api}/api/v2/dags", headers=auth, timeout=10).json()["dags"]
        errors = requests.get(f"{api}/api/v2/importErrors", headers=auth, timeout=10).json()["import_errors"]
        assert not errors, errors
        return dag_ids <= {d["dag_id"] for d in dags}

    wait_for(parsed, "the example DAGs to be parsed", 120, logs)

    dag_id = "peak_inventory_incremental"
    for step in (
        ["backfill", "create", "--dag-id", dag_id, "--from-date", DAY, "--to-date", DAY],
        ["dags", "unpause", dag_id],
    ):
        done = subprocess.run(["airflow", *step], env=stack["env"], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def backfilled() -> str | None:
        url = f"{api}/api/v2/dags/{dag_id}/dagRuns?run_type=backfill"
        runs = requests.get(url, headers=auth, timeout=10).json()["dag_runs"]
        states = {r["state"] for r in runs}
        return runs[0]["state"] if len(runs) == 1 and states <= {"success", "failed"} else None

    assert wait_for(backfilled, "the backfill run", 300, logs) == "success"

    # the emulator holds exactly that day's valid products from the PostgreSQL warehouse …
    wh = stack["warehouse"]
    conn = psycopg2.connect(host=wh["host"], port=wh["port"], user="warehouse", dbname=wh["dbname"])
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT product_id, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS') FROM products "
                "WHERE updated_at >= %s::date AND updated_at < %s::date + 1 AND pack_size IS NOT NULL",
                (DAY, DAY),
            )
            expected = set(cur.fetchall())
    finally:
        conn.close()
    rows = requests.get(f"{stack['emulator']}/_emulator/objects/INV_PRODUCTS_OOTB", timeout=10).json()["rows"]
    stored = {(r["product_id"], r["updated_at"]) for r in rows if r["updated_at"].startswith(DAY)}
    assert stored == expected and len(expected) > 20  # (catch-up runs of earlier days may add their own)
    # … and the two invalid ones went to the rejects directory the compose file sets
    sink = stack["rejects"] / dag_id / DAY / "products.jsonl"
    assert {json.loads(line)["key"]["product_id"] for line in sink.read_text().splitlines()} == {
        "PROD-0007",
        "PROD-0011",
    }
