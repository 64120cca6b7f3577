"""The ``peak`` connection: defaults, validation errors that name the connection and the extra, http policy."""

import pytest

from peak_provider.connection import PeakSettings
from peak_provider.exceptions import PeakConfigError
from peak_provider.hooks.peak import PeakHook


def settings(host="https://ingestion.peak.ai", port=None, **extra):
    extra.setdefault("solution_name", "INV_OOTB")
    return PeakSettings.from_parts("peak_x", host, port, extra)


def test_defaults():
    s = settings(host=None)
    assert s.base_url == "https://service.peak.ai/ingestion-api"
    assert (s.max_rows_per_request, s.max_request_bytes, s.requests_per_second, s.max_in_flight) == (
        500,
        1_000_000,
        50,
        16,
    )
    assert s.ingest_path == "/api/v2/ingest/object/{object}"
    assert s.verify is True and s.application == "inventory" and s.source_timezone == "UTC"
    assert (s.rate_limit_scope, s.rate_limit_conn_id) == ("host", None)


def test_ui_strings_are_coerced():
    s = settings(max_rows_per_request="250", verify="false", requests_per_second="12.5", prefix="INV_")
    assert (s.max_rows_per_request, s.verify, s.requests_per_second, s.prefix) == (250, False, 12.5, "INV_")


def test_legacy_prefixed_extras_are_read():
    s = PeakSettings.from_parts("c", "https://x.peak.ai", None, {"extra__peak__solution_name": "QP_OOTB"})
    assert s.solution_name == "QP_OOTB"


def test_hub_and_regional_hosts_by_changing_host_only():
    assert settings(host="https://ingestion.peak.ai").base_url == "https://ingestion.peak.ai"
    assert settings(host="ingestion.peaksydney.peak.ai").base_url == "https://ingestion.peaksydney.peak.ai"
    assert settings(host="http://127.0.0.1", port=8080).base_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"solution_name": ""}, "'peak_x': solution_name: required extra is missing"),
        ({"application": "crm"}, "'peak_x': application: 'crm' is not one of inventory"),
        ({"max_rows_per_request": "lots"}, "'peak_x': max_rows_per_request: expected integer"),
        ({"max_rows_per_request": 0}, "'peak_x': max_rows_per_request: must be >= 1"),
        ({"verify": "maybe"}, "'peak_x': verify: expected boolean"),
        ({"timestamp_format": "DD/MM/YYYY"}, "'peak_x': timestamp_format: 'DD/MM/YYYY' is not one of"),
        ({"source_timezone": "Mars/Olympus"}, "'peak_x': source_timezone: unknown time zone"),
        ({"solution_nmae": "X"}, "'peak_x': solution_nmae: unknown extra"),
        ({"ingest_path": "/api/v2/other"}, "'peak_x': ingest_path: '/api/v2/other' is not one of"),
        ({"rate_limit_scope": "cluster"}, "'peak_x': rate_limit_scope: 'cluster' is not one of host, process"),
    ],
)
def test_invalid_extras_name_the_connection_and_extra(extra, message):
    with pytest.raises(PeakConfigError, match=message.replace("(", r"\(")):
        settings(**extra)


@pytest.mark.parametrize("host", ["http://ingestion.peak.ai", "http://10.0.0.5:8080", "http://example.com/api"])
def test_plain_http_refused_except_loopback(host):
    with pytest.raises(PeakConfigError, match="plain http:// is refused"):
        settings(host=host)


@pytest.mark.parametrize("host", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9", "http://127.3.4.5"])
def test_plain_http_allowed_to_loopback(host):
    assert settings(host=host).base_url.startswith("http://")


def test_malformed_host():
    with pytest.raises(PeakConfigError, match="host: 'ftp://x' is not an http"):
        settings(host="ftp://x")


def test_hook_construction_fails_early(peak_connection):
    with pytest.raises(PeakConfigError, match="'no_sol': solution_name"):
        PeakHook(peak_connection("no_sol", host="https://ingestion.peak.ai", solution_name=""))
    with pytest.raises(PeakConfigError, match="'no_pat': password: the Personal Access Token is missing"):
        PeakHook(peak_connection("no_pat", host="https://ingestion.peak.ai", password=None))


def test_unknown_resource_lists_known_ones(peak_connection):
    hook = PeakHook(peak_connection(host="https://ingestion.peak.ai"))
    with pytest.raises(PeakConfigError, match=r"Unknown resource 'sales_orders'.*customer_orders"):
        hook.object_name("sales_orders")


def test_token_not_in_repr(peak_connection):
    hook = PeakHook(peak_connection(host="https://ingestion.peak.ai", password="canary-secret-pat"))
    assert "canary-secret-pat" not in repr(hook)
    assert "canary-secret-pat" not in repr(hook.settings)
