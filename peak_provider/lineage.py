"""Where a load's rows land, as Airflow assets and OpenLineage datasets see it.

One function, :func:`peak_object`, names a Peak object: the asset URI ``peak://<host>/<solution>/<OBJECT>``,
the OpenLineage namespace ``peak://<host>`` and name ``<solution>.<OBJECT>`` all come from it. The
``peak`` asset scheme's URI handler (:func:`sanitize_uri`), asset factory (:func:`create_asset`) and
OpenLineage converter (:func:`convert_asset_to_openlineage`) are registered in ``get_provider_info``.

The OpenLineage client is optional (extra ``[openlineage]``): everything here imports it lazily, through
``airflow.providers.common.compat.openlineage``, and only when lineage is actually being built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Asset

SCHEME = "peak"
#: A solution or object name: no separators, no spaces (``INV_OOTB``, ``INV_PRODUCTS_OOTB``).
_NAME = re.compile(r"^[^/\s.?#]+$")
#: The custom output facet with the load's counts (its JSON schema ships in ``docs/facets/``).
INGESTION_FACET = "peakIngestion"
INGESTION_FACET_SCHEMA_URL = (
    "https://github.com/airflow-provider-peak/airflow-provider-peak/blob/main/docs/facets/"
    "PeakIngestionOutputDatasetFacet.json"
)


@dataclass(frozen=True)
class PeakObject:
    """A Peak object's identity: the API host, the solution and the full object name."""

    host: str
    solution: str
    object_name: str

    @property
    def uri(self) -> str:
        """The Airflow asset URI, ``peak://<host>/<solution>/<OBJECT>``."""
        return f"{SCHEME}://{self.host}/{self.solution}/{self.object_name}"

    @property
    def namespace(self) -> str:
        """The OpenLineage dataset namespace, ``peak://<host>``."""
        return f"{SCHEME}://{self.host}"

    @property
    def name(self) -> str:
        """The OpenLineage dataset name, ``<solution>.<OBJECT>``."""
        return f"{self.solution}.{self.object_name}"


def peak_object(host: str, solution: str, object_name: str) -> PeakObject:
    """The identity of ``object_name`` in ``solution`` on the API at ``host`` (``netloc``, e.g.
    ``service.peak.ai`` or ``127.0.0.1:8085``); the host is lower-cased and ``:443`` dropped.

    :raises ValueError: a part is empty or contains ``/``, ``.``, ``?``, ``#`` or whitespace.
    """
    host = host.strip().lower().removesuffix(":443")
    if not host or "@" in host or "/" in host:
        raise ValueError(f"peak:// URIs need a host (the API's host[:port]), got {host!r}")
    for what, part in (("solution", solution), ("object", object_name)):
        if not _NAME.match(part):
            raise ValueError(f"peak:// URIs need a {what} name without '/', '.', '?', '#' or spaces, got {part!r}")
    return PeakObject(host, solution, object_name)


def peak_object_of_hook(hook: Any, resource: str) -> PeakObject:
    """The identity of ``resource``'s object for a :class:`~peak_provider.hooks.peak.PeakHook`."""
    return peak_object(hook.settings.host, hook.settings.solution_name, hook.object_name(resource))


def peak_object_from_uri(uri: str | SplitResult) -> PeakObject:
    """Parse ``peak://<host>/<solution>/<OBJECT>``.

    :raises ValueError: another scheme, user info, a query, or not exactly two path segments.
    """
    parts = uri if isinstance(uri, SplitResult) else urlsplit(uri)
    if parts.scheme.lower() != SCHEME:
        raise ValueError(f"not a peak:// URI: {parts.geturl()!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"peak:// URIs take no query or fragment: {parts.geturl()!r}")
    segments = parts.path.strip("/").split("/")
    if len(segments) != 2:
        raise ValueError(f"peak:// URIs are peak://<host>/<solution>/<OBJECT>, got {parts.geturl()!r}")
    return peak_object(parts.netloc, segments[0], segments[1])


# --- Airflow's asset-uris entry points ------------------------------------------------------------


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's URI handler for the ``peak`` scheme: normalise (lower-case host, no ``:443``, no
    trailing slash) and reject malformed URIs with a ``ValueError``."""
    obj = peak_object_from_uri(uri)
    return urlsplit(obj.uri)


def create_asset(*, host: str, solution: str, object_name: str, extra: dict[str, Any] | None = None) -> Asset:
    """Airflow's asset factory for the ``peak`` scheme."""
    from airflow.providers.common.compat.sdk import Asset

    uri = peak_object(host, solution, object_name).uri
    return Asset(name=uri, uri=uri, extra=extra)


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any = None) -> Any:
    """Airflow's OpenLineage converter for the ``peak`` scheme: namespace ``peak://<host>``, name
    ``<solution>.<OBJECT>``."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    obj = peak_object_from_uri(asset.uri)
    return Dataset(namespace=obj.namespace, name=obj.name)


# --- OpenLineage datasets and facets ---------------------------------------------------------------


@cache
def _ingestion_facet_class() -> type:
    """The ``peakIngestion`` output facet class (built on first use: the client is optional)."""
    import attr
    from openlineage.client.generated.base import OutputDatasetFacet

    @attr.define
    class PeakIngestionOutputDatasetFacet(OutputDatasetFacet):
        """What one load did to a Peak object: rows read, accepted and rejected, the operation."""

        # camelCase, as OpenLineage facets spell their fields
        rowsRead: int
        rowsAccepted: int
        rowsRejected: int
        operation: str
        dryRun: bool

        @staticmethod
        def _get_schema() -> str:
            return INGESTION_FACET_SCHEMA_URL

    return PeakIngestionOutputDatasetFacet


def output_dataset(obj: PeakObject, summary: dict[str, Any] | None) -> Any:
    """The OpenLineage output dataset for a Peak object; with a load's ``summary`` (an
    ``IngestResult.to_dict()``), its ``outputStatistics`` (rows accepted, bytes sent; not for a dry run,
    which writes nothing) and ``peakIngestion`` (read, accepted, rejected, operation, dry run) output facets."""
    from airflow.providers.common.compat.openlineage.facet import (
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )

    facets: dict[str, Any] = {}
    if summary and not summary.get("dry_run"):  # a dry run writes no row
        facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
            rowCount=int(summary.get("rows_accepted", 0)), size=int(summary.get("bytes_sent", 0))
        )
    if summary:
        facets[INGESTION_FACET] = _ingestion_facet_class()(
            rowsRead=int(summary.get("rows_read", 0)),
            rowsAccepted=int(summary.get("rows_accepted", 0)),
            rowsRejected=int(summary.get("rows_rejected", 0)),
            operation=str(summary.get("operation", "")),
            dryRun=bool(summary.get("dry_run", False)),
        )
    return OutputDataset(namespace=obj.namespace, name=obj.name, outputFacets=facets)


def report_hook_output(hook: Any, obj: PeakObject) -> None:
    """Tell Airflow's hook lineage collector that ``hook`` wrote to ``obj`` (a no-op where hook
    lineage is not collected, e.g. without the OpenLineage provider)."""
    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

    get_hook_lineage_collector().add_output_asset(context=hook, uri=obj.uri)
