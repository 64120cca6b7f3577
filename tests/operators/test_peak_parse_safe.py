"""Parsing a DAG reads no connection, variable or network; the asset is known at run time, through an
AssetAlias; and a watermark stored under an earlier key is carried over (issue 14)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest

from peak_provider.exceptions import PeakConfigError
from peak_provider.incremental import WatermarkStore
from peak_provider.operators.peak import SqlToPeakOperator
from peak_provider.task_groups import peak_load_group
from tests.conftest import REPO
from tests.context import MemoryAssetStateStore

WATERMARK_VAR = "peak_watermark__peak_test_watermark__products"


@pytest.fixture
def no_outside_world(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make connection and variable look-ups and socket connects record the call and fail loudly."""
    from airflow.providers.common.compat.sdk import BaseHook, Variable

    calls: list[str] = []

    def refuse(what: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            calls.append(f"{what}{args[-1:]}")
            raise AssertionError(f"{what} called while parsing")

        return refused

    for name in list(os.environ):
        if name.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):
            monkeypatch.delenv(name)
    monkeypatch.setattr(BaseHook, "get_connection", classmethod(refuse("BaseHook.get_connection")))
    monkeypatch.setattr(Variable, "get", staticmethod(refuse("Variable.get")))
    from airflow.models.connection import Connection

    monkeypatch.setattr(
        Connection, "get_connection_from_secrets", classmethod(refuse("Connection.get_connection_from_secrets"))
    )
    try:
        from airflow.sdk import Connection as SdkConnection
    except ImportError:  # Airflow 2
        pass
    else:
        monkeypatch.setattr(SdkConnection, "get", classmethod(refuse("Connection.get")))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    return calls


def parse(folder: Path) -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

        return DagBag(dag_folder=str(folder), include_examples=False, safe_mode=False)
    return DagBag(dag_folder=str(folder), safe_mode=False)  # Airflow 3 reads no example DAGs here


@pytest.mark.parametrize("folder", [REPO / "dags", REPO / "tests" / "dag_files"], ids=["examples", "test_dags"])
def test_parsing_reads_no_connection_variable_or_network(no_outside_world, folder):
    bag = parse(folder)
    assert bag.import_errors == {}
    assert no_outside_world == []
    assert bag.dags  # the files were really parsed
    if folder.name == "dag_files":
        entry_points = bag.dags["peak_test_entry_points"]
        assert len(entry_points.tasks) == 7  # 3 operators + 2 groups of 2
        outlets = {task.task_id: task.outlets for task in entry_points.tasks}
        assert [o.name for o in outlets["grouped_with_application.products"]] == ["peak/nowhere_peak/products"]
        assert entry_points.get_task("grouped_any_application.sale").upstream_task_ids == {
            "grouped_any_application.product"
        }
        (pinned,) = outlets["pinned"]
        assert pinned.uri == "peak://service.peak.ai/INV_OOTB/INV_PRODUCTS_OOTB"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ('application="inventory"', "Unknown resource 'prodcts' for application 'inventory'. Known resources: "),
        ("", "Unknown resource 'prodcts' in every application. Known resources: inventory: customer_orders, "),
    ],
)
def test_an_unknown_resource_fails_at_parse_time_with_the_list(no_outside_world, tmp_path, arguments, message):
    (tmp_path / "bad_resource.py").write_text(
        textwrap.dedent(f"""
            from airflow.providers.common.compat.sdk import DAG
            from peak_provider.operators.peak import SqlToPeakOperator

            with DAG(dag_id="bad_resource", schedule=None):
                SqlToPeakOperator(task_id="t", resource="prodcts", sql="select 1", sql_conn_id="w", {arguments})
        """)
    )
    (error,) = parse(tmp_path).import_errors.values()
    assert message in error
    assert no_outside_world == []


def test_group_and_operator_catalogue_checks(no_outside_world):
    with pytest.raises(PeakConfigError, match="No single application has all of products, sale"):
        peak_load_group("g", loads={"products": "x", "sale": "y"}, sql_conn_id="w")
    with pytest.raises(PeakConfigError, match="Unknown application 'inventroy'"):
        SqlToPeakOperator(task_id="t", resource="products", application="inventroy", sql="x", sql_conn_id="w")
    # products and locations are in inventory and rebuy_replenishment, with the same dependencies: fine
    from airflow.providers.common.compat.sdk import DAG

    with DAG(dag_id="d", schedule=None):
        group = peak_load_group("h", loads={"products": "x", "locations": "y"}, sql_conn_id="w")
    assert sorted(group.children) == ["h.locations", "h.products"]
    assert no_outside_world == []


def test_a_per_resource_key_not_in_loads_fails_at_parse_time_with_the_list(no_outside_world):
    from airflow.providers.common.compat.sdk import DAG

    loads = {"products": "x", "Customer_Orders": "y"}
    with DAG(dag_id="d", schedule=None):
        with pytest.raises(
            PeakConfigError,
            match=r"peak_load_group 'g': unknown per_resource key 'customer_order' \(not in loads\)\. "
            r"Known resources: customer_orders, products$",
        ):
            peak_load_group("g", loads=loads, sql_conn_id="w", per_resource={"customer_order": {"retries": 5}})
        with pytest.raises(PeakConfigError, match=r"unknown per_resource keys 'locations', 'sale' \(not in loads\)"):
            peak_load_group(
                "g", loads=loads, sql_conn_id="w", per_resource={"locations": {}, "products": {}, "sale": {}}
            )
        # keys match loads whatever their case
        group = peak_load_group("h", loads=loads, sql_conn_id="w", per_resource={"CUSTOMER_ORDERS": {"retries": 5}})
    assert group.children["h.customer_orders"].retries == 5
    assert no_outside_world == []


KEYS = ["peak://h:1/INV_OOTB/INV_PRODUCTS_OOTB", "peak://peak_wm/PRODUCTS"]


def test_watermark_read_order_current_then_variable_then_older_keys(airflow_db, monkeypatch):
    older = {KEYS[1]: {"peak_watermark": "2025-03-01 12:00:00"}}
    store = WatermarkStore({"asset_state_store": MemoryAssetStateStore(dict(older))}, KEYS, WATERMARK_VAR)
    assert store.get() == "2025-03-01 12:00:00"  # carried over from the earlier key
    assert "earlier key" in store.backend

    monkeypatch.setenv(f"AIRFLOW_VAR_{WATERMARK_VAR.upper()}", "2025-03-02 00:00:00")
    store = WatermarkStore({"asset_state_store": MemoryAssetStateStore(dict(older))}, KEYS, WATERMARK_VAR)
    assert store.get() == "2025-03-02 00:00:00"  # the Variable is newer than any earlier key

    marks = {**older, KEYS[0]: {"peak_watermark": "2025-03-03 00:00:00"}}
    store = WatermarkStore({"asset_state_store": MemoryAssetStateStore(marks)}, KEYS, WATERMARK_VAR)
    assert store.get() == "2025-03-03 00:00:00"
    store.set("2025-03-04 00:00:00")
    assert marks[KEYS[0]] == {"peak_watermark": "2025-03-04 00:00:00"}
    assert marks[KEYS[1]] == {"peak_watermark": "2025-03-01 12:00:00"}  # earlier keys are only read


# --- real runs (Airflow 3: dag.test() on the Execution API, asset_state_store) ------------------------


@pytest.fixture
def wm_env(airflow_db, peak_emulator, tmp_path, monkeypatch):
    """The watermark DAG's warehouse (SQLite) and Peak connection; returns the warehouse connection."""
    path = tmp_path / "wm.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE products (product_id TEXT, source_id TEXT, pack_size INTEGER, updated_at TEXT)")
    monkeypatch.setenv("AIRFLOW_CONN_WM_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_WM", peak_emulator.connection_json("INV_OOTB"))
    yield db
    db.close()


def add_products(db: sqlite3.Connection, first: int, updated_at: str, n: int = 3) -> None:
    db.executemany(
        "INSERT INTO products VALUES (?, ?, ?, ?)",
        [(f"P{i:04d}", "S1", 6, updated_at) for i in range(first, first + n)],
    )
    db.commit()


def seed_legacy_mark(name: str, mark: str) -> None:
    """An active asset ``name`` holding ``mark``, as the provider before the AssetAlias left it."""
    from airflow._shared.state import AssetScope
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.state import get_state_backend
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.name == name))
        if asset is None:
            asset = AssetModel(name=name, uri=name, group="asset", extra={})
            session.add(asset)
            session.add(AssetActive(name=name, uri=name))
            session.flush()
        get_state_backend().set(AssetScope(asset_id=asset.id), "peak_watermark", json.dumps(mark), session=session)


def produced_events(run: Any) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(asset URI, extra, alias names) of the asset events a DAG run's tasks produced."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent).where(AssetEvent.source_dag_id == run.dag_id, AssetEvent.source_run_id == run.run_id)
        ).all()
        return [(e.asset.uri, e.extra, [a.name for a in e.source_aliases]) for e in events]


@pytest.mark.airflow3
def test_a_run_emits_the_full_identity_and_carries_the_old_watermark_over(wm_env, peak_emulator):
    from peak_lineage_dags import watermark_dag

    host = peak_emulator.url.split("://")[1]
    seed_legacy_mark("peak://peak_wm/PRODUCTS", "2025-03-01 12:00:00")  # the old connection-id fallback key
    add_products(wm_env, 0, "2025-03-01 06:00:00")  # loaded before the upgrade: not sent again
    add_products(wm_env, 100, "2025-03-01 18:00:00")  # changed after the mark: sent

    run = watermark_dag.test()
    assert run.state == "success"
    assert sorted(r["product_id"] for r in peak_emulator.rows("INV_PRODUCTS_OOTB")) == ["P0100", "P0101", "P0102"]
    ((uri, extra, aliases),) = produced_events(run)
    assert uri == f"peak://{host}/INV_OOTB/INV_PRODUCTS_OOTB"
    assert (extra["rows_read"], extra["rows_accepted"], extra["rows_rejected"]) == (3, 3, 0)
    assert aliases == ["peak/peak_wm/products"]

    # the new mark (the alias's asset is not active until a scheduler sees it: kept in the Variable) wins
    # over the older key on the next run
    add_products(wm_env, 200, "2025-03-02 08:00:00")
    run = watermark_dag.test()
    assert run.state == "success"
    sent = [e["rows"] for e in peak_emulator.request_log() if "PRODUCTS" in e["path"]]
    assert sent == [3, 3]
