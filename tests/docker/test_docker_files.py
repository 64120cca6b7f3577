"""The Docker demo stack (docker/), checked without a Docker engine.

The compose file parses, everything it and the Dockerfile refer to exists, the image's Airflow is the one
pinned in constraints/, every ``AIRFLOW_CONN_*`` is a connection the hook accepts and the emulator serves,
and the committed warehouse seed is up to date and loads into a real PostgreSQL. The stack checks run on
both variants (``tests/docker/compose.py``): the base file, and the CeleryExecutor override merged onto it,
which also gets checks of its own (Redis, the two workers, the shared request budget).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from peak_provider.connection import PeakSettings
from peak_provider.demo import warehouse
from peak_provider.emulator.cli import build_parser
from peak_provider.emulator.config import Solution
from tests.airflow_services import admin_cursor, fresh_database
from tests.docker import compose as compose_model
from tests.pg import free_port, load_sql

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
SEED = DOCKER / "warehouse" / "init.sql"
AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)


@pytest.fixture(scope="module", params=list(compose_model.VARIANTS))
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The stack of each variant: the base file, and the base file with the CeleryExecutor override."""
    return compose_model.load(*compose_model.VARIANTS[request.param])


@pytest.fixture(scope="module")
def celery_services() -> dict[str, dict[str, Any]]:
    return compose_model.load(*compose_model.VARIANTS["celery"])["services"]


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def airflow_services(services: dict[str, dict[str, Any]]) -> list[str]:
    """The Airflow components of a stack (the base file's and, in the Celery variant, the workers)."""
    return [name for name in services if name.startswith("airflow-")]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: compose_model.interpolate(str(v)) for k, v in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [compose_model.interpolate(str(c)) for c in cmd]


def connections(services: dict[str, dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    """``AIRFLOW_CONN_*`` of one service as parsed JSON, by connection id."""
    return {
        key.removeprefix("AIRFLOW_CONN_").lower(): json.loads(value)
        for key, value in environment(services[name]).items()
        if key.startswith("AIRFLOW_CONN_")
    }


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile_args() -> dict[str, str]:
    return dict(arg.split("=", 1) for op, arg in dockerfile_instructions() if op == "ARG" and "=" in arg)


# --- the compose file and what it refers to ----------------------------------------------------------


def test_compose_parses_and_has_the_stack(compose, services):
    assert set(services) >= {"postgres", "warehouse", "peak-emulator", "netns", *AIRFLOW_SERVICES}
    for name in airflow_services(services):
        assert services[name]["image"] == services["peak-emulator"]["image"] == "airflow-provider-peak:dev"
    assert set(compose["volumes"]) >= {
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }


#: Compose Specification keys this file may use (a typo such as ``healtcheck`` would be silently ignored).
SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "volumes", "ports", "depends_on", "healthcheck",
    "restart", "network_mode", "user",
}  # fmt: skip
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def test_compose_services_use_known_keys_and_consistent_dependencies(compose, services):
    assert set(compose) <= {"services", "volumes", "networks", "name"} | {k for k in compose if k.startswith("x-")}
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, f"{name}: {set(service) - SERVICE_KEYS}"
        assert set(service.get("healthcheck", {})) <= HEALTHCHECK_KEYS, name
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services and dependency != name, f"{name} -> {dependency}"
            assert spec["condition"] in CONDITIONS, f"{name} -> {dependency}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health"
        if mode := service.get("network_mode"):
            owner = mode.removeprefix("service:")
            assert owner in services and owner in service.get("depends_on", {}), name
            assert not {"ports", "networks", "hostname"} & set(service), f"{name} shares {owner}'s network"


def test_referenced_files_and_build_contexts_exist(services):
    for name, service in services.items():
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert context == REPO, name
            assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE, name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists(), f"{name}: {source}"
    dags = (DOCKER / "../dags").resolve()
    assert {"peak_inventory_incremental.py", "peak_b2c_pricing_incremental.py"} <= {p.name for p in dags.iterdir()}


def test_dockerfile_copies_existing_files_that_the_dockerignore_lets_through():
    args = dockerfile_args()
    lines = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # everything is excluded but what is re-included
    allowed = {p.lstrip("!").rstrip("/") for p in ignore if p.startswith("!")}
    copies = [arg for op, arg in dockerfile_instructions() if op == "COPY"]
    assert copies
    for copy in copies:
        sources = [s for s in copy.split()[:-1] if not s.startswith("--")]
        for source in sources:
            source = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], source)
            assert (REPO / source).exists(), source
            assert source.split("/")[0] in allowed, f"{source} is excluded by Dockerfile.dockerignore"


def test_image_airflow_version_is_the_one_pinned_in_constraints():
    (base,) = [arg for op, arg in dockerfile_instructions() if op == "FROM"]
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", base)
    assert match, base
    airflow_version, python = match.groups()
    constraints = REPO / dockerfile_args()["CONSTRAINTS"]
    assert constraints.name == f"airflow-{airflow_version}-py{python}.txt"
    assert f"apache-airflow=={airflow_version}" in constraints.read_text().splitlines()
    # the newest Airflow the project pins (older ones, e.g. for 2.x compatibility runs, may sit beside it)
    pinned = {
        tuple(int(n) for n in m.group(1).split(".")): p.name
        for p in (REPO / "constraints").glob("airflow-*.txt")
        if (m := re.fullmatch(r"airflow-(\d+\.\d+\.\d+)-py[\d.]+\.txt", p.name))
    }
    assert pinned[max(pinned)] == constraints.name


def test_airflow_services_share_the_emulators_network_namespace(services):
    """The provider allows plain http only to loopback: the emulator must be on the workers' loopback."""
    namespace = services["peak-emulator"]["network_mode"]
    assert namespace == "service:netns"
    assert "network_mode" not in services["netns"]
    for name in airflow_services(services):
        assert services[name]["network_mode"] == namespace, name
    assert "127.0.0.1:8080:8080" in services["netns"]["ports"]


def test_emulator_binds_loopback_and_serves_the_connections_solutions(services):
    args = build_parser().parse_args(command(services["peak-emulator"])[3:])
    assert command(services["peak-emulator"])[:3] == ["python", "-m", "peak_provider.emulator"]
    assert args.host == "127.0.0.1" and not args.allow_remote
    solutions = {s.name: s for s in map(Solution.parse, args.solution)}
    for name in airflow_services(services):
        for conn_id, conn in connections(services, name).items():
            if conn["conn_type"] != "peak":
                continue
            settings = PeakSettings.from_parts(conn_id, conn.get("host"), conn.get("port"), conn.get("extra", {}))
            assert settings.base_url == f"http://127.0.0.1:{args.port}"
            assert conn["password"] in args.token
            solution = solutions[settings.solution_name]
            assert (solution.application, solution.prefix, solution.suffix) == (
                settings.application,
                settings.prefix,
                settings.suffix,
            )


def test_emulator_port_is_free_of_every_airflow_port_in_the_shared_namespace(services):
    emulator_port = build_parser().parse_args(command(services["peak-emulator"])[3:]).port
    airflow_ports = {8793, 8794, 8974}  # log servers and scheduler health check (defaults)
    airflow_ports.add(int(" ".join(command(services["airflow-apiserver"])).split("--port ")[1].split()[0]))
    for name in airflow_services(services):
        execution_api = environment(services[name])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
        airflow_ports.add(int(execution_api.split(":")[2].split("/")[0]))
    assert emulator_port not in airflow_ports, (emulator_port, airflow_ports)


def test_connections_variables_and_pool_of_the_example_dags(services):
    dags_source = "\n".join(p.read_text() for p in (REPO / "dags").glob("*.py"))
    init_script = " ".join(command(services["airflow-init"]))
    warehouse_env = environment(services["warehouse"])
    for name in airflow_services(services):
        conns = connections(services, name)
        env = environment(services[name])
        assert {"peak_warehouse", "peak_inventory", "peak_b2c_pricing"} <= set(conns), name
        for conn_id in ("peak_inventory", "peak_b2c_pricing"):
            assert f'"{conn_id}"' in dags_source
        assert env["AIRFLOW_VAR_PEAK_WAREHOUSE_CONN_ID"] == "peak_warehouse"
        wh = conns["peak_warehouse"]
        assert wh["conn_type"] == "postgres" and wh["host"] == "warehouse" and wh["port"] == 5432
        assert (wh["login"], wh["password"], wh["schema"]) == (
            warehouse_env["POSTGRES_USER"],
            warehouse_env["POSTGRES_PASSWORD"],
            warehouse_env["POSTGRES_DB"],
        )
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].split("@")[1].startswith("postgres:5432/")
    assert '"pool": "peak_api"' in (REPO / "dags" / "peak_common.py").read_text()
    assert "airflow pools set peak_api " in init_script
    assert "airflow db migrate" in init_script


def test_every_peak_connection_passes_the_live_emulator(tmp_path):
    """Start the emulator with the compose file's own arguments and test each peak connection against it.
    (The Celery variant's connections, with the shared budget, are tested in test_compose_stack.py.)"""
    from peak_provider.hooks.peak import PeakHook

    services = compose_model.load(COMPOSE_FILE)["services"]
    port = free_port()
    args = [a for a in command(services["peak-emulator"])[3:] if not a.startswith(("--port", "--db"))]
    log = tmp_path / "emulator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "peak_provider.emulator", *args, f"--port={port}", f"--db={tmp_path / 'peak.db'}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        tested = 0
        for conn_id, conn in connections(services, "airflow-scheduler").items():
            if conn["conn_type"] == "peak":
                conn["host"] = conn["host"].replace(":8787", f":{port}")
                with pytest.MonkeyPatch.context() as mp:
                    mp.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
                    ok, message = PeakHook(peak_conn_id=conn_id).test_connection()
                assert ok, f"{conn_id}: {message}"
                tested += 1
        assert tested == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- the CeleryExecutor variant ----------------------------------------------------------------------

CELERY_WORKERS = ("airflow-worker-1", "airflow-worker-2")
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"


def test_celery_variant_runs_every_component_on_celery_through_redis(celery_services):
    raw = yaml.safe_load(compose_model.CELERY.read_text())["services"]
    for name, service in raw.items():
        assert set(service) <= SERVICE_KEYS | {"extends"}, f"{name}: {set(service) - SERVICE_KEYS}"
        if "extends" in service:
            assert service["extends"] == {"file": COMPOSE_FILE.name, "service": "airflow-scheduler"}, name
    base = compose_model.load(COMPOSE_FILE)["services"]
    assert set(celery_services) == set(base) | {"redis", *CELERY_WORKERS}
    redis = celery_services["redis"]
    assert command(redis)[0] == "redis-server" and "--port" not in command(redis)  # the default 6379
    assert "healthcheck" in redis and "ports" not in redis  # reached by name on the compose network only
    scheduler = celery_services["airflow-scheduler"]
    for name in airflow_services(celery_services):
        env = environment(celery_services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.hostname, broker.port, broker.path) == ("redis", "redis", 6379, "/0"), name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert celery_services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}, name
    for name in CELERY_WORKERS:
        worker = celery_services[name]
        # the scheduler's image, network namespace, volumes and environment: they agree on everything
        for key in ("image", "build", "network_mode", "volumes", "environment", "restart"):
            assert worker[key] == scheduler[key], (name, key)
        assert worker["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}  # the execution API
        assert worker["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}


def worker_arguments(argv: list[str]) -> argparse.Namespace:
    """``argv`` (``celery worker …``) parsed by the installed Celery provider's own ``airflow celery worker``."""
    pytest.importorskip("airflow.providers.celery", reason="needs apache-airflow-providers-celery (the celery extra)")
    from airflow.providers.celery.executors.celery_executor import CeleryExecutor

    (group,) = [c for c in CeleryExecutor.get_cli_commands() if c.name == "celery"]
    (worker,) = [c for c in group.subcommands if c.name == "worker"]
    assert argv[:2] == ["celery", "worker"], argv
    parser = argparse.ArgumentParser(prog="airflow celery worker", exit_on_error=False)
    for arg in worker.args:
        arg.add_to_parser(parser)
    return parser.parse_args(argv[2:])


def test_celery_workers_are_two_named_nodes_with_four_slots_each(celery_services):
    nodes = []
    for name in CELERY_WORKERS:
        args = worker_arguments(command(celery_services[name]))
        assert int(args.concurrency) >= 4, name
        # one network namespace: one hostname and one port range for both, so each names its node and
        # neither takes the log-server port (the api-server reads the logs volume)
        node, host = args.celery_hostname.split("@")
        assert host == "%h", name
        assert args.skip_serve_logs, name
        nodes.append(node)
        kind, script = celery_services[name]["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        assert shlex.split(compose_model.interpolate(script)) == [
            "celery",
            "--app",
            CELERY_APP,
            "inspect",
            "ping",
            "-d",
            f"{node}@${{HOSTNAME}}",
        ]
    assert len(set(nodes)) == len(CELERY_WORKERS)


def test_celery_variant_draws_every_peak_load_from_one_budget_in_redis(celery_services):
    base = compose_model.load(COMPOSE_FILE)["services"]
    for name in airflow_services(celery_services):
        conns = connections(celery_services, name)
        broker_db = int(urlsplit(environment(celery_services[name])["AIRFLOW__CELERY__BROKER_URL"]).path.strip("/"))
        peak = {conn_id: conn for conn_id, conn in conns.items() if conn["conn_type"] == "peak"}
        assert set(peak) == {"peak_inventory", "peak_b2c_pricing"}, name
        for conn_id, conn in peak.items():
            settings = PeakSettings.from_parts(conn_id, conn.get("host"), conn.get("port"), conn["extra"])
            assert settings.rate_limit_conn_id, (name, conn_id)
            budget = conns[settings.rate_limit_conn_id]
            assert budget["conn_type"] == "redis" and budget["host"] == "redis" and budget["port"] == 6379
            assert int(budget["extra"]["db"]) != broker_db  # its own database beside the broker's
            # the base file's connection, plus the budget
            base_conn = connections(base, name if name in base else "airflow-scheduler")[conn_id]
            assert conn == compose_model.merge(
                base_conn, {"extra": {"rate_limit_conn_id": settings.rate_limit_conn_id}}
            )


def test_image_has_what_the_celery_variant_runs():
    """The base image ships the Celery provider and the redis client; the build checks they import."""
    (run,) = [arg for op, arg in dockerfile_instructions() if op == "RUN" and "ProvidersManager" in arg]
    assert "import airflow.providers.celery, redis" in run


# --- the warehouse seed ------------------------------------------------------------------------------


def test_seed_sql_is_up_to_date(tmp_path):
    out = tmp_path / "init.sql"
    subprocess.run(
        [sys.executable, str(DOCKER / "generate_seed_sql.py"), "--output", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == SEED.read_bytes(), "docker/warehouse/init.sql is stale: run docker/generate_seed_sql.py"


@pytest.fixture
def seeded_db(postgres: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A fresh database loaded with init.sql by psql, as the postgres image's entrypoint does."""
    name = "docker_seed"
    fresh_database(postgres, name)
    try:
        load_sql(postgres, name, SEED)
        yield {**postgres, "dbname": name}
    finally:
        with admin_cursor(postgres) as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def demo_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return warehouse.build(tmp_path_factory.mktemp("demo") / "warehouse.db")


def test_seed_sql_loads_into_postgres_with_the_demo_rows_and_types(seeded_db, demo_sqlite):
    import psycopg2

    conn = psycopg2.connect(
        host=seeded_db["host"], port=seeded_db["port"], user=seeded_db["user"], dbname=seeded_db["dbname"]
    )
    try:
        with conn.cursor() as cur, sqlite3.connect(demo_sqlite) as lite:
            cur.execute("SHOW timezone")
            assert cur.fetchone() == ("UTC",)  # ALTER DATABASE … SET timezone applies to new sessions
            for table, columns in warehouse.TABLES.items():
                cur.execute(f"SELECT count(*) FROM {table}")
                (expected,) = lite.execute(f"SELECT count(*) FROM {table}").fetchone()
                assert cur.fetchone() == (expected,), table
                cur.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                    (table,),
                )
                assert [c for (c,) in cur.fetchall()] == [c.split()[0] for c in columns], table
            cur.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' AND column_name IN ('updated_at', 'is_store', 'ordered_value', "
                "'receipt_date', 'pack_size')"
            )
            types = {(t, c): d for t, c, d in cur.fetchall()}
            assert {types[(t, "updated_at")] for t in warehouse.TABLES} == {"timestamp without time zone"}
            assert types[("locations", "is_store")] == "boolean"
            assert types[("customer_orders", "ordered_value")] == "numeric"
            assert types[("purchase_order", "receipt_date")] == "date"
            assert types[("products", "pack_size")] == "integer"
    finally:
        conn.close()


def test_seed_interval_matches_the_demo_warehouse(seeded_db, demo_sqlite):
    """An interval load's rows in PostgreSQL (aware UTC bounds, as the operator binds them) equal SQLite's."""
    import psycopg2

    start, end = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC)
    conn = psycopg2.connect(
        host=seeded_db["host"], port=seeded_db["port"], user=seeded_db["user"], dbname=seeded_db["dbname"]
    )
    try:
        with conn.cursor() as cur, sqlite3.connect(demo_sqlite) as lite:
            for table in warehouse.TABLES:
                key = warehouse.TABLES[table][0].split()[0]
                cur.execute(
                    f"SELECT {key}, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS') FROM {table} "
                    "WHERE updated_at >= %s AND updated_at < %s",
                    (start, end),
                )
                pg_rows = sorted(cur.fetchall())
                lite_rows = sorted(
                    lite.execute(
                        f"SELECT {key}, updated_at FROM {table} WHERE updated_at >= ? AND updated_at < ?",
                        ("2025-03-01 00:00:00", "2025-03-02 00:00:00"),
                    ).fetchall()
                )
                assert pg_rows == lite_rows and pg_rows, table
    finally:
        conn.close()


@pytest.mark.parametrize("variant", list(compose_model.VARIANTS))
def test_compose_config_validates_where_docker_compose_is_installed(variant):
    """``docker compose config`` needs no engine; skipped where the Compose v2 plugin is missing."""
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the Docker Compose v2 client is not installed")
    files = [arg for path in compose_model.VARIANTS[variant] for arg in ("-f", str(path))]
    done = subprocess.run([docker, "compose", *files, "config", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
