"""The provider dict validates against Airflow's own schema and Airflow discovers the ``peak`` type."""

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

from peak_provider.extras import EXTRAS
from peak_provider.get_provider_info import get_provider_info


def test_provider_info_validates_against_airflow_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-peak"
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == "peak"
    assert conn_type["hook-name"]
    assert set(conn_type["conn-fields"]) == set(EXTRAS)
    for spec in conn_type["conn-fields"].values():
        jsonschema.Draft7Validator.check_schema(spec["schema"])
    behaviour = conn_type["ui-field-behaviour"]
    assert behaviour["relabeling"] == {"host": "API base URL", "password": "Personal Access Token"}
    assert {"login", "schema", "port"} <= set(behaviour["hidden-fields"])


def test_entry_point_is_declared():
    (ep,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("peak_provider")]
    assert ep.load()() == get_provider_info()


@pytest.mark.slow
def test_airflow_cli_lists_provider_and_hook(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    airflow_bin = Path(sys.executable).parent / "airflow"
    providers = subprocess.run([airflow_bin, "providers", "list"], env=env, capture_output=True, text=True, check=True)
    assert "airflow-provider-peak" in providers.stdout
    hooks = subprocess.run([airflow_bin, "providers", "hooks"], env=env, capture_output=True, text=True, check=True)
    assert "peak_provider.hooks.peak.PeakHook" in hooks.stdout


def test_legacy_ui_field_behaviour_matches():
    from peak_provider.hooks.peak import PeakHook

    legacy = PeakHook.get_ui_field_behaviour()
    assert legacy["relabeling"]["password"] == "Personal Access Token"
    assert "login" in legacy["hidden_fields"]
