"""peak_load_group(): one SqlToPeakOperator per resource, wired in foreign-key order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.common.compat.sdk import TaskGroup

from peak_provider.exceptions import PeakConfigError
from peak_provider.hooks.peak import PeakHook
from peak_provider.operators.peak import SqlToPeakOperator
from peak_provider.resources import CatalogueError, get_application, load_order


def peak_load_group(
    group_id: str,
    loads: Mapping[str, str],
    *,
    sql_conn_id: str,
    peak_conn_id: str = PeakHook.default_conn_name,
    application: str | None = None,
    per_resource: Mapping[str, Mapping[str, Any]] | None = None,
    **operator_kwargs: Any,
) -> TaskGroup:
    """Build a TaskGroup that loads each resource after the resources its foreign keys reference.

    Products and locations load before the orders and sales that reference them; resources that do
    not depend on each other run in parallel (bounded by the ``pool``/``max_active_tis_per_dag`` you pass).

    :param loads: resource name -> SQL (or ``.sql`` file); task ids are the resource names.
    :param application: the catalogue to order by; default: the Peak connection's ``application``.
    :param per_resource: resource -> extra operator arguments for that resource only.
    :param operator_kwargs: arguments for every operator (``pool``, ``retries``, ``incremental_column``, …).
    :raises PeakConfigError: an unknown resource or a foreign-key cycle, at DAG parse time.
    """
    app = get_application(application or PeakHook(peak_conn_id).settings.application)
    try:
        order = load_order(app, loads)
    except CatalogueError as exc:
        raise PeakConfigError(f"peak_load_group {group_id!r}: {exc}") from None
    sql_by_name = {name.lower(): sql for name, sql in loads.items()}
    extra = {name.lower(): dict(kw) for name, kw in (per_resource or {}).items()}
    with TaskGroup(group_id=group_id) as group:
        tasks = {
            name: SqlToPeakOperator(
                task_id=name,
                resource=name,
                sql=sql_by_name[name],
                sql_conn_id=sql_conn_id,
                peak_conn_id=peak_conn_id,
                **{**operator_kwargs, **extra.get(name, {})},
            )
            for name in order
        }
        for name, task in tasks.items():
            for fk in app.resource(name).foreign_keys:
                if fk.references in tasks and fk.references != name:
                    tasks[fk.references] >> task
    return group
