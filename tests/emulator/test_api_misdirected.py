"""Airflow api-server paths get a 421 that names the port clash; Peak's own paths are unaffected."""

from __future__ import annotations

import pytest
import requests

from peak_provider.emulator import Limits
from peak_provider.emulator.cli import build_parser

CLASH = "this is the Peak emulator, not Airflow's api-server"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        # what a task runner calls when [core] execution_api_server_url points at the emulator
        ("PATCH", "/execution/task-instances/0199b5c4-0000-7000-8000-000000000000/run"),
        ("PUT", "/execution/task-instances/0199b5c4-0000-7000-8000-000000000000/heartbeat"),
        ("GET", "/execution/health"),
        ("GET", "/execution"),
        # Airflow's public REST API and its health check
        ("GET", "/api/v2/monitor/health"),
        ("GET", "/api/v2/version"),
        ("POST", "/api/v2/dags/peak_inventory_incremental/dagRuns"),
        ("GET", "/api/v2"),
        ("GET", "/ingestion-api/api/v2/connections"),
    ],
)
def test_airflow_paths_are_421_with_the_clash_named(peak_emulator, method, path):
    r = requests.request(
        method, peak_emulator.url + path, json={"state": "running"}, headers={"Authorization": "jwt"}, timeout=10
    )
    assert r.status_code == 421
    error = r.json()["error"]
    assert (error["code"], error["category"]) == ("DI_E_20014", "MISDIRECTED")
    assert CLASH in error["message"] and path in error["message"] and "8787" in error["message"]
    assert peak_emulator.stats()["requests_by_status"] == {"421": 1}


def test_421_comes_before_auth_rate_limit_and_faults(peak_emulator_factory):
    emu = peak_emulator_factory(limits=Limits(requests_per_second=1), faults={"error_rate": 1.0})
    statuses = [requests.get(emu.url + "/execution/health", timeout=10).status_code for _ in range(3)]
    assert statuses == [421, 421, 421]
    assert emu.stats()["faults"] == {}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v2/schema/solutions", 200),
        ("/ingestion-api/api/v2/schema/solutions", 200),
        ("/api/v2/schema/rollout", 404),  # Peak's, not emulated
        ("/executions", 404),
        ("/nothing", 404),
    ],
)
def test_peak_and_unknown_paths_are_not_misdirected(peak_emulator, path, status):
    r = requests.get(peak_emulator.url + path, headers={"Authorization": peak_emulator.token}, timeout=10)
    assert r.status_code == status
    assert CLASH not in r.text


def test_default_port_is_no_airflow_components_default():
    from airflow.configuration import conf

    airflow_ports = {
        int(option["default"])
        for section in conf.configuration_description.values()
        for key, option in section.get("options", {}).items()
        if key.endswith("port") and str(option.get("default") or "").isdigit()
    }
    assert {8080, 8793, 8794, 8974} <= airflow_ports  # api-server, log servers, scheduler health
    port = build_parser().parse_args([]).port
    assert port == 8787 and port not in airflow_ports
