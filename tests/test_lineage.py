"""OpenLineage events of real runs: the SQLite tables read, the Peak object written, with its counts.

Each run is ``dag.test()`` in a child process with the OpenLineage provider's file transport configured
(the provider decides at import time whether it is enabled, so it cannot be switched on in this process).
Skipped where ``apache-airflow-providers-openlineage`` is not installed (the ``[openlineage]`` extra).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from peak_provider.hooks.peak import PeakHook
from peak_provider.lineage import convert_asset_to_openlineage, output_dataset, peak_object, sanitize_uri
from tests.airflow_services import run_captured
from tests.conftest import REPO

OPENLINEAGE = importlib.util.find_spec("airflow.providers.openlineage") is not None
NO_OPENLINEAGE = (
    "apache-airflow-providers-openlineage is not installed (pip install 'airflow-provider-peak[openlineage]')"
)
RUN_DAG = "from peak_lineage_dags import lineage_dag; print('RUN STATE', lineage_dag.test().state)"


def test_one_identity_for_the_asset_the_converter_and_the_uri_handler():
    from urllib.parse import urlsplit

    from airflow.providers.common.compat.sdk import Asset

    obj = peak_object("Service.Peak.AI:443", "INV_OOTB", "INV_PRODUCTS_OOTB")
    assert (obj.uri, obj.namespace, obj.name) == (
        "peak://service.peak.ai/INV_OOTB/INV_PRODUCTS_OOTB",
        "peak://service.peak.ai",
        "INV_OOTB.INV_PRODUCTS_OOTB",
    )
    assert sanitize_uri(urlsplit("peak://SERVICE.peak.ai/INV_OOTB/INV_PRODUCTS_OOTB/")).geturl() == obj.uri
    for bad in ("peak://peak_default/PRODUCTS", "peak:///INV_OOTB/X", "peak://h/S/O?x=1", "peak://h/S/O/extra"):
        with pytest.raises(ValueError, match="peak://"):
            sanitize_uri(urlsplit(bad))
    if not OPENLINEAGE:
        print(f"skipping the converter check: {NO_OPENLINEAGE}")
        return
    dataset = convert_asset_to_openlineage(Asset(obj.uri))
    assert (dataset.namespace, dataset.name) == (obj.namespace, obj.name)


@pytest.fixture
def lineage_collector(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The hook lineage collector Airflow uses once a lineage reader (OpenLineage) is installed."""
    from airflow.providers.common.compat import sdk as compat_sdk

    try:
        from airflow.sdk.lineage import HookLineageCollector
    except ImportError:  # Airflow 2
        from airflow.lineage.hook import HookLineageCollector  # type: ignore[no-redef]

    collector = HookLineageCollector()
    monkeypatch.setattr(compat_sdk, "get_hook_lineage_collector", lambda: collector, raising=False)
    return collector


def test_the_hook_reports_its_output_to_the_hook_lineage_collector(peak_emulator, monkeypatch, lineage_collector):
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB"))
    hook = PeakHook()
    hook.report_lineage("products")
    (output,) = lineage_collector.collected_assets.outputs
    asset = getattr(output, "asset", None) or output.dataset  # Airflow 2 collects datasets
    assert asset.uri == f"peak://{peak_emulator.url.split('://')[1]}/INV_OOTB/INV_PRODUCTS_OOTB"
    assert output.context is hook


def test_a_dry_run_reports_no_output(peak_emulator, monkeypatch, lineage_collector):
    """A dry run writes nothing: the hook reports no output to the collector (a real load does), and the
    OpenLineage output dataset carries no ``outputStatistics``, only the ``peakIngestion`` facet saying so."""
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB"))
    rows = [{"product_id": "P1", "source_id": "S1", "pack_size": 1, "updated_at": "2025-03-01 00:00:00"}]
    with closing(PeakHook()) as hook:
        assert hook.upsert("products", rows, dry_run=True).rows_accepted == 1
        assert not lineage_collector.collected_assets.outputs
        hook.upsert("products", rows)
    assert len(lineage_collector.collected_assets.outputs) == 1
    if not OPENLINEAGE:
        print(f"skipping the dataset check: {NO_OPENLINEAGE}")
        return
    summary = {"rows_read": 1, "rows_accepted": 1, "rows_rejected": 0, "operation": "UPSERT", "bytes_sent": 99}
    obj = peak_object("h", "S", "O")
    assert set(output_dataset(obj, {**summary, "dry_run": False}).outputFacets) == {"outputStatistics", "peakIngestion"}
    facets = output_dataset(obj, {**summary, "dry_run": True}).outputFacets
    assert set(facets) == {"peakIngestion"} and facets["peakIngestion"].dryRun is True


def test_postgres_inputs_come_from_the_hooks_openlineage_database_info(
    postgres, postgres_conn_id, peak_emulator, monkeypatch
):
    if not OPENLINEAGE:
        print(f"skipped: {NO_OPENLINEAGE}")
        pytest.skip(NO_OPENLINEAGE)
    import psycopg2

    from peak_provider.operators.peak import SqlToPeakOperator

    db = psycopg2.connect(**postgres)
    db.autocommit = True
    try:
        with db.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS ol_products; DROP TABLE IF EXISTS ol_suppliers")
            cur.execute("CREATE TABLE ol_products (product_id text, source_id text, pack_size int, updated_at text)")
            cur.execute("CREATE TABLE ol_suppliers (supplier_id text)")
        monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB"))
        task = SqlToPeakOperator(
            task_id="t",
            resource="products",
            sql="SELECT p.* FROM ol_products p JOIN ol_suppliers s ON s.supplier_id = p.source_id",
            sql_conn_id=postgres_conn_id,
        )
        lineage = task.get_openlineage_facets_on_complete(None)
    finally:
        with db.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS ol_products; DROP TABLE IF EXISTS ol_suppliers")
        db.close()
    namespace = f"postgres://{postgres['host']}:{postgres['port']}"
    assert {(i.namespace, i.name) for i in lineage.inputs} == {
        (namespace, f"{postgres['dbname']}.public.ol_products"),
        (namespace, f"{postgres['dbname']}.public.ol_suppliers"),
    }
    products = next(i for i in lineage.inputs if i.name.endswith("ol_products"))
    assert [f.name for f in products.facets["schema"].fields][:2] == ["product_id", "source_id"]  # read from the db
    (output,) = lineage.outputs
    assert output.name == "INV_OOTB.INV_PRODUCTS_OOTB"
    assert output.outputFacets == {}  # no load ran: no counts


@pytest.fixture
def lineage_env(airflow_db, peak_emulator, tmp_path, monkeypatch):
    """The lineage DAG's warehouse (products joined to suppliers) and Peak connection."""
    if not OPENLINEAGE:
        print(f"skipped: {NO_OPENLINEAGE}")
        pytest.skip(NO_OPENLINEAGE)
    path = tmp_path / "ol.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE suppliers (supplier_id TEXT, supplier_name TEXT)")
    db.execute("CREATE TABLE products (product_id TEXT, source_id TEXT, pack_size INTEGER, updated_at TEXT)")
    db.execute("INSERT INTO suppliers VALUES ('S1', 'Supplier 1')")
    db.executemany(
        "INSERT INTO products VALUES (?, 'S1', 6, '2025-03-01 10:00:00')", [(f"P{i:03d}",) for i in range(7)]
    )
    db.commit()
    monkeypatch.setenv("AIRFLOW_CONN_OL_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_OL", peak_emulator.connection_json("INV_OOTB"))
    yield path, db
    db.close()


def run_with_openlineage(events_file: Path) -> tuple[str, list[dict[str, Any]]]:
    """``dag.test()`` of ``peak_test_lineage`` in a child process; its state and the task's OL events."""
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO / "dags"), str(REPO / "tests" / "dag_files"), os.environ.get("PYTHONPATH")) if p
        ),
    }
    _, output = run_captured([sys.executable, "-c", RUN_DAG], env)  # the child and all it started are stopped
    state = next((line.split()[-1] for line in output.splitlines() if line.startswith("RUN STATE")), None)
    assert state, output[-3000:]
    lines = events_file.read_text().splitlines() if events_file.exists() else []
    events = [json.loads(line) for line in lines]
    events_file.unlink(missing_ok=True)
    return state, [e for e in events if e.get("job", {}).get("name") == "peak_test_lineage.products"]


def peak_output(event: dict[str, Any], host: str) -> dict[str, Any]:
    (output,) = event["outputs"]
    assert (output["namespace"], output["name"]) == (f"peak://{host}", "INV_OOTB.INV_PRODUCTS_OOTB")
    return output["outputFacets"]


@pytest.mark.airflow3
def test_complete_and_fail_events_name_the_tables_read_and_the_peak_object_with_counts(
    lineage_env, peak_emulator, tmp_path
):
    path, db = lineage_env
    host = peak_emulator.url.split("://")[1]

    state, events = run_with_openlineage(tmp_path / "events.jsonl")
    assert state == "success"
    (complete,) = [e for e in events if e["eventType"] == "COMPLETE"]
    assert {(i["namespace"], i["name"]) for i in complete["inputs"]} == {
        (f"sqlite://{path}", "main.products"),
        (f"sqlite://{path}", "main.suppliers"),
    }
    facets = peak_output(complete, host)
    assert facets["outputStatistics"]["rowCount"] == 7
    assert facets["outputStatistics"]["size"] > 0
    assert (facets["peakIngestion"]["rowsRead"], facets["peakIngestion"]["rowsRejected"]) == (7, 0)
    assert facets["peakIngestion"]["_schemaURL"].endswith("PeakIngestionOutputDatasetFacet.json")
    schema = json.loads((REPO / "docs" / "facets" / "PeakIngestionOutputDatasetFacet.json").read_text())
    own_fields = schema["$defs"]["PeakIngestionOutputDatasetFacet"]["allOf"][1]  # [0] is OpenLineage's base
    jsonschema.validate(facets["peakIngestion"], own_fields)
    assert "JOIN suppliers" in complete["job"]["facets"]["sql"]["query"]

    # an invalid row (pack_size is required) and max_rejected_rows=0: the task fails after the load
    db.execute("INSERT INTO products VALUES ('P999', 'S1', NULL, '2025-03-01 11:00:00')")
    db.commit()
    state, events = run_with_openlineage(tmp_path / "events.jsonl")
    assert state == "failed"
    assert not [e for e in events if e["eventType"] == "COMPLETE"]
    (fail,) = [e for e in events if e["eventType"] == "FAIL"]
    facets = peak_output(fail, host)
    assert facets["outputStatistics"]["rowCount"] == 7
    assert (facets["peakIngestion"]["rowsRead"], facets["peakIngestion"]["rowsRejected"]) == (8, 1)
    assert {i["name"] for i in fail["inputs"]} == {"main.products", "main.suppliers"}
