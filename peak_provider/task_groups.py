"""peak_load_group(): one SqlToPeakOperator per resource, wired in foreign-key order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.common.compat.sdk import TaskGroup

from peak_provider.exceptions import PeakConfigError
from peak_provider.hooks.peak import PeakHook
from peak_provider.operators.peak import SqlToPeakOperator
from peak_provider.resources import Application, CatalogueError, applications_with, get_application, load_order


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

    Building the group reads no connection (it runs whenever the DAG file is parsed).

    :param loads: resource name -> SQL (or ``.sql`` file); task ids are the resource names.
    :param application: the catalogue to check and order by (``inventory``, ``b2c_pricing``, …). Default:
        the application whose catalogue has all of ``loads``; where several do and their foreign keys
        among ``loads`` differ, pass it.
    :param per_resource: resource -> extra operator arguments for that resource only; every resource must be
        one of ``loads``.
    :param operator_kwargs: arguments for every operator (``pool``, ``retries``, ``incremental_column``, …).
    :raises PeakConfigError: an unknown resource or application, a ``per_resource`` key not in ``loads``, an
        ambiguous catalogue or a foreign-key cycle, at DAG parse time.
    """
    try:
        app = _catalogue_of(loads, application)
        order = load_order(app, loads)
    except CatalogueError as exc:
        raise PeakConfigError(f"peak_load_group {group_id!r}: {exc}") from None
    sql_by_name = {name.lower(): sql for name, sql in loads.items()}
    extra = {name.lower(): dict(kw) for name, kw in (per_resource or {}).items()}
    if unknown := [name for name in per_resource or {} if name.lower() not in sql_by_name]:
        raise PeakConfigError(
            f"peak_load_group {group_id!r}: unknown per_resource key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} (not in loads). Known resources: {', '.join(sorted(sql_by_name))}"
        )
    with TaskGroup(group_id=group_id) as group:
        tasks = {
            name: SqlToPeakOperator(
                task_id=name,
                resource=name,
                sql=sql_by_name[name],
                sql_conn_id=sql_conn_id,
                peak_conn_id=peak_conn_id,
                application=application,
                **{**operator_kwargs, **extra.get(name, {})},
            )
            for name in order
        }
        for name, task in tasks.items():
            for fk in app.resource(name).foreign_keys:
                if fk.references in tasks and fk.references != name:
                    tasks[fk.references] >> task
    return group


def _catalogue_of(loads: Mapping[str, str], application: str | None) -> Application:
    """``application``'s catalogue, or the one application that has all of ``loads`` (several that
    agree on the foreign keys among them count as one: the order is the same)."""
    if application is not None:
        return get_application(application)
    candidates = applications_with(loads)

    def edges(app: Application) -> set[tuple[str, str]]:
        names = {name.lower() for name in loads}
        return {
            (name, fk.references)
            for name in names
            for fk in app.resource(name).foreign_keys
            if fk.references in names and fk.references != name
        }

    if len({frozenset(edges(app)) for app in candidates}) > 1:
        raise CatalogueError(
            f"{', '.join(sorted(loads))} exist in {', '.join(app.name for app in candidates)} with different "
            "dependencies; pass application="
        )
    return candidates[0]
