"""The compose file's Airflow stack, run for real without a Docker engine.

Every Airflow service of docker/docker-compose.yaml (and the emulator) runs as a local process with that
service's own ``environment`` and ``command``, the local venv standing in for the image. In the stack they
all share one network namespace, so they reach each other and the emulator on localhost, as local processes
do; only what lies outside that namespace is mapped: the two PostgreSQL services become databases of the
test's PostgreSQL (and, in the CeleryExecutor variant, the ``redis`` service a local ``redis-server``), the
container paths temporary directories, and the fixed ports free ones. Then: the admin logs in with the
compose file's password, the pool exists, both example DAGs parse, and a backfill loads the seeded
PostgreSQL warehouse into the emulator, rejecting the demo's invalid rows into the rejects volume.

The CeleryExecutor variant (docker-compose.celery.yaml on top) adds Redis and two workers to that same
stack; running it all again would double this heavy test, so only what it adds runs: the two workers with
their own commands and environment, until each passes its own healthcheck, and the variant's ``peak``
connections, drawing from the shared budget in Redis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.airflow_services import admin_cursor, free_port, stop_process_group, wait_for
from tests.docker import compose as compose_model
from tests.pg import load_sql
from tests.redis_server import MISSING, REDIS_SERVER, RedisServer, redis_server

pytestmark = [pytest.mark.airflow3, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "docker" / "warehouse" / "init.sql"
BIN = Path(sys.executable).parent
COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
DAY = "2025-03-02"  # a backfill's logical date D loads [D, D+1): the day with the demo's invalid rows
DATABASES = {"airflow": "compose_airflow", "warehouse": "compose_warehouse"}  # role -> database


class LocalStack:
    """The services of a compose stack as local processes: their environments and commands with what lies
    outside the shared network namespace mapped, started with their output in ``<logs>/<service>.log``."""

    def __init__(
        self,
        services: dict[str, dict[str, Any]],
        postgres: dict[str, Any],
        tmp_path: Path,
        redis: RedisServer | None = None,
    ):
        self.services = services
        self.postgres = postgres
        self.logs = tmp_path
        self.redis = redis
        self.api_port, self.emu_port = free_port(), free_port()
        self.paths = {f"/opt/airflow/{d}": tmp_path / d for d in ("auth", "peak-rejects", "emulator")}
        for path in self.paths.values():
            path.mkdir()
        self.procs: list[subprocess.Popen[bytes]] = []

    def create_databases(self) -> None:
        """The metadata and warehouse databases (and their roles) on the test's PostgreSQL."""
        with admin_cursor(self.postgres) as cur:
            for role, db in DATABASES.items():
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if not cur.fetchone():
                    cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{role}'")
                cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
                cur.execute(f"CREATE DATABASE {db} OWNER {role}")

    def drop_databases(self) -> None:
        with admin_cursor(self.postgres) as cur:
            for db in DATABASES.values():
                cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")

    def outside(self, value: str) -> str:
        """Map what lies outside the shared namespace: container paths, the fixed ports and the broker."""
        for container_path, local in self.paths.items():
            value = value.replace(container_path, str(local))
        value = value.replace("localhost:8080", f"localhost:{self.api_port}")
        value = value.replace("--port 8080", f"--port {self.api_port}")
        value = value.replace("127.0.0.1:8787", f"127.0.0.1:{self.emu_port}")
        value = value.replace("--port=8787", f"--port={self.emu_port}")
        if self.redis is not None:
            value = value.replace("redis://redis:6379/", f"redis://{self.redis.host}:{self.redis.port}/")
        return value

    def env_of(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({k: self.outside(str(v)) for k, v in (self.services[name].get("environment") or {}).items()})
        pg = self.postgres
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
            if key in env:
                url = env[key]
                assert url.endswith("@postgres:5432/airflow"), url
                env[key] = url.replace("@postgres:5432/airflow", f"@{pg['host']}:{pg['port']}/{DATABASES['airflow']}")
        if "AIRFLOW_CONN_PEAK_WAREHOUSE" in env:
            conn = json.loads(env["AIRFLOW_CONN_PEAK_WAREHOUSE"])
            assert (conn["host"], conn["port"], conn["schema"]) == ("warehouse", 5432, "warehouse")
            conn.update(host=pg["host"], port=pg["port"], schema=DATABASES["warehouse"])
            env["AIRFLOW_CONN_PEAK_WAREHOUSE"] = json.dumps(conn)
        for key, value in list(env.items()):
            if key.startswith("AIRFLOW_CONN_") and json.loads(value).get("conn_type") == "redis":
                assert self.redis is not None, f"{name}: {key} needs the redis service"
                conn = json.loads(value)
                assert (conn["host"], conn["port"]) == ("redis", 6379), conn
                env[key] = json.dumps({**conn, "host": self.redis.host, "port": self.redis.port})
        env.update(
            AIRFLOW_HOME=str(self.logs / "airflow"),
            AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),  # the compose file mounts dags/ there
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT=str(free_port()),
            PATH=f"{BIN}:{os.environ['PATH']}",
        )
        return env

    def command_of(self, name: str) -> list[str]:
        cmd = [self.outside(str(c)) for c in self.services[name]["command"]]
        return cmd if cmd[0] in ("bash", "python") else ["airflow", *cmd]  # the image's entrypoint does the same

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("w") as log:
            proc = subprocess.Popen(
                self.command_of(name),
                env={**self.env_of(name), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.logs,
            )
        self.procs.append(proc)
        return proc

    def start_emulator(self) -> str:
        self.start("peak-emulator")
        url = f"http://127.0.0.1:{self.emu_port}"
        wait_for(lambda: requests.get(f"{url}/_emulator/health", timeout=2).ok, "the emulator", 30, self.logs)
        return url


@pytest.fixture
def stack(postgres: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    local = LocalStack(compose_model.load(compose_model.BASE)["services"], postgres, tmp_path)
    local.create_databases()
    load_sql(postgres, DATABASES["warehouse"], SEED, user="warehouse")
    try:
        emulator = local.start_emulator()
        init = subprocess.run(
            local.command_of("airflow-init"), env=local.env_of("airflow-init"), capture_output=True, text=True
        )
        assert init.returncode == 0, init.stdout[-2000:] + init.stderr[-2000:]
        for name in COMPONENTS:
            local.start(name)
        api = f"http://localhost:{local.api_port}"
        wait_for(lambda: requests.get(f"{api}/api/v2/monitor/health", timeout=2).ok, "the api-server", 120, tmp_path)
        yield {
            "api": api,
            "emulator": emulator,
            "env": local.env_of("airflow-scheduler"),
            "rejects": local.paths["/opt/airflow/peak-rejects"],
            "warehouse": {**postgres, "dbname": DATABASES["warehouse"]},
            "logs": tmp_path,
        }
    finally:
        stop_process_group(*local.procs)
        local.drop_databases()


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

    def airflow(*args: str) -> None:
        done = subprocess.run(["airflow", *args], env=stack["env"], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def first_catch_up_run() -> str | None:
        url = f"{api}/api/v2/dags/{dag_id}/dagRuns?run_type=scheduled&order_by=logical_date&limit=1"
        runs = requests.get(url, headers=auth, timeout=10).json()["dag_runs"]
        return runs[0]["state"] if runs and runs[0]["state"] in ("success", "failed") else None

    # docker/README's order: unpausing starts the catch-up, whose first run creates the targets' assets; a
    # backfill started before that run finished would race it in Airflow (README, *Backfill*)
    airflow("dags", "unpause", dag_id)
    assert wait_for(first_catch_up_run, "the first catch-up run", 300, logs) == "success"
    airflow("backfill", "create", "--dag-id", dag_id, "--from-date", DAY, "--to-date", DAY)

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


CELERY_WORKERS = ("airflow-worker-1", "airflow-worker-2")


def budget_draws(redis: RedisServer) -> int:
    """Lua script calls the server has run: one per request slot drawn from a shared budget."""
    client = redis.client()
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0)) for cmd in ("eval", "evalsha"))


@pytest.mark.skipif(REDIS_SERVER is None, reason=MISSING)
def test_celery_variant_workers_pass_their_healthchecks_and_loads_share_the_budget(postgres, tmp_path, monkeypatch):
    pytest.importorskip("airflow.providers.celery", reason="needs apache-airflow-providers-celery (the celery extra)")
    from peak_provider.hooks.peak import PeakHook

    services = compose_model.load(*compose_model.VARIANTS["celery"])["services"]
    with redis_server() as redis:
        local = LocalStack(services, postgres, tmp_path, redis)
        local.create_databases()
        # each container has its own filesystem (airflow.cfg, the worker's pid file) but the logs volume
        own = {
            name: {"AIRFLOW_HOME": str(tmp_path / name), "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(tmp_path / "logs")}
            for name in CELERY_WORKERS
        }
        try:
            # the variant's peak connections, as a worker's tasks see them, draw from the budget in Redis
            local.start_emulator()
            worker_env = local.env_of(CELERY_WORKERS[0])
            for key in ("AIRFLOW_CONN_PEAK_INVENTORY", "AIRFLOW_CONN_PEAK_B2C_PRICING", "AIRFLOW_CONN_PEAK_RATE_LIMIT"):
                monkeypatch.setenv(key, worker_env[key])
            before = budget_draws(redis)
            for conn_id in ("peak_inventory", "peak_b2c_pricing"):
                ok, message = PeakHook(peak_conn_id=conn_id).test_connection()
                assert ok, f"{conn_id}: {message}"
            assert budget_draws(redis) - before >= 2

            # both workers, with their own commands and environments, pass their own healthchecks
            for name in CELERY_WORKERS:
                local.start(name, **own[name])

            def healthy(name: str) -> bool:
                for proc in local.procs:
                    assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
                kind, script = services[name]["healthcheck"]["test"]
                assert kind == "CMD-SHELL"
                check = subprocess.run(
                    ["bash", "-c", compose_model.interpolate(script)],
                    env={**local.env_of(name), **own[name]},
                    capture_output=True,
                    text=True,
                )
                return check.returncode == 0

            for name in CELERY_WORKERS:
                wait_for(lambda name=name: healthy(name), f"{name}'s healthcheck", 180, tmp_path)
        finally:
            stop_process_group(*local.procs)
            local.drop_databases()
