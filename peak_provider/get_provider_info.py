"""The provider's metadata for Airflow (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from peak_provider import __version__

#: How the standard connection-form fields are shown for a ``peak`` connection.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "port", "extra"],
    "relabeling": {"host": "API base URL", "password": "Personal Access Token"},
    "placeholders": {
        "host": "https://service.peak.ai/ingestion-api",
        "password": "PAT from platform.peak.ai -> Access Tokens",
    },
}

#: The ``peak`` asset scheme: URI handler (normalises, rejects malformed URIs), factory, OpenLineage converter.
ASSET_URIS: dict[str, Any] = {
    "schemes": ["peak"],
    "handler": "peak_provider.lineage.sanitize_uri",
    "factory": "peak_provider.lineage.create_asset",
    "to_openlineage_converter": "peak_provider.lineage.convert_asset_to_openlineage",
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider dict; ``conn-fields`` is built from the one table of extras."""
    from peak_provider.extras import conn_fields

    return {
        "package-name": "airflow-provider-peak",
        "name": "Peak",
        "description": "Push warehouse data into the Peak (UiPath) Supply Chain & Retail ingestion API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Peak",
                "external-doc-url": "https://docs.uipath.com/industry-department-solutions/automation-cloud/latest/supply-chain-retail-api-guide/introduction",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Peak", "python-modules": ["peak_provider.hooks.peak"]}],
        "operators": [{"integration-name": "Peak", "python-modules": ["peak_provider.operators.peak"]}],
        "connection-types": [
            {
                "connection-type": "peak",
                "hook-class-name": "peak_provider.hooks.peak.PeakHook",
                "hook-name": "Peak Ingestion API",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": conn_fields(),
            }
        ],
        # Airflow 3 reads asset-uris, Airflow 2 dataset-uris (the same entry, as official providers list it)
        "asset-uris": [ASSET_URIS],
        "dataset-uris": [ASSET_URIS],
    }
