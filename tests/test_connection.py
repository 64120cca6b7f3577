"""The ``peak`` connection: defaults, validation errors that name the connection and the extra, http policy."""

import json
import re

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


@pytest.mark.parametrize(
    "extra",
    [
        {"timeout": "nan"},
        {"requests_per_second": "nan"},
        {"max_throttle_wait": "nan"},
        {"retry_backoff": "nan"},
        {"retry_backoff_max": "NaN"},
        {"request_deadline": "inf"},
        {"timeout": "1e400"},
        json.loads('{"timeout": NaN}'),  # Python's json accepts NaN and Infinity
        json.loads('{"request_deadline": Infinity}'),
    ],
)
def test_non_finite_numbers_refused(extra):
    """NaN passes every ``>= minimum`` check; with timeout nan, rows never sent were counted in doubt."""
    (name,) = extra
    with pytest.raises(PeakConfigError, match=f"'peak_x': {name}: expected a finite number"):
        settings(**extra)


@pytest.mark.parametrize(
    "extra", [{"max_in_flight": "inf"}, {"max_retries": "-inf"}, json.loads('{"max_in_flight": Infinity}')]
)
def test_infinite_integer_refused_naming_the_extra(extra):
    """``int(float("inf"))`` raises OverflowError; it is reported like any other invalid integer."""
    (name,) = extra
    with pytest.raises(PeakConfigError, match=f"'peak_x': {name}: expected integer"):
        settings(**extra)


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("http://alice:hunter2pw@127.0.0.1:8787", "remove the user-info"),
        ("alice:hunter2pw@ingestion.peak.ai", "remove the user-info"),
        ("https://:hunter2pw@ingestion.peak.ai/ingestion-api", "remove the user-info"),
        ("ftp://alice:hunter2pw@x", "remove the user-info"),
        ("https://ingestion.peak.ai?x=1", "remove the query ('?...') or fragment ('#...')"),
        ("https://ingestion.peak.ai/ingestion-api/?", "remove the query"),
        ("https://ingestion.peak.ai#f", "remove the query ('?...') or fragment ('#...')"),
        (
            "https://ingestion.peak.ai:abc/ingestion-api",
            "'https://ingestion.peak.ai:abc/ingestion-api' has an invalid port",
        ),
        ("https://ingestion.peak.ai:70000", "'https://ingestion.peak.ai:70000' has an invalid port"),
        ("https://[::1", "not a URL (a broken IPv6 literal?)"),
        ("https://bob:hunter2pw\uff03@host.example", "not a URL"),  # urlsplit's own error quotes the password
    ],
)
def test_host_with_user_info_query_or_fragment_refused(host, message):
    """User-info would replace the token with Basic auth; a query or fragment breaks the appended ingest path;
    a port that is not a number from 0 to 65535 or a broken IPv6 literal is named, not a raw ValueError."""
    with pytest.raises(PeakConfigError, match=re.escape(f"'peak_x': host: {message}")) as caught:
        settings(host=host)
    assert "hunter2pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "port", "base_url"),
    [
        ("https://service.peak.ai/ingestion-api/", None, "https://service.peak.ai/ingestion-api"),
        ("https://ingestion.peak.ai:8443/ingestion-api", None, "https://ingestion.peak.ai:8443/ingestion-api"),
        ("service.peak.ai/ingestion-api", 8443, "https://service.peak.ai:8443/ingestion-api"),
        (" http://[::1]:8787/ ", None, "http://[::1]:8787"),
        ("https://ingestion.peak.ai:", 8443, "https://ingestion.peak.ai:8443"),
    ],
)
def test_valid_hosts_still_accepted(host, port, base_url):
    assert settings(host=host, port=port).base_url == base_url


def test_hook_refuses_user_info_and_non_finite_extras(peak_connection):
    with pytest.raises(PeakConfigError, match="'with_userinfo': host: remove the user-info") as caught:
        PeakHook(peak_connection("with_userinfo", host="http://alice:hunter2pw@127.0.0.1:8787"))
    assert "hunter2pw" not in str(caught.value)
    with pytest.raises(PeakConfigError, match="'nan_timeout': timeout: expected a finite number"):
        PeakHook(peak_connection("nan_timeout", host="https://ingestion.peak.ai", timeout=float("nan")))


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
