"""A fresh Airflow home with default settings parses without a traceback or an error about this provider.

Airflow 3's example-DAG discovery (``load_examples``, on by default) imports every provider under the module
name it derives from the distribution name: ``airflow-provider-peak`` -> ``airflow_provider_peak``, the alias
installed from ``peak_provider/_alias``.
"""

from __future__ import annotations

import os
import re
from importlib.metadata import distribution
from pathlib import Path

import pytest

from tests.airflow_services import AIRFLOW, run_captured

OURS = re.compile(r"airflow_provider_peak|airflow-provider-peak|peak_provider")


def test_the_alias_is_the_module_airflow_derives_from_the_distribution_name():
    import airflow_provider_peak

    import peak_provider

    dist = distribution("airflow-provider-peak")
    assert dist.metadata["Name"].replace("-", "_") == airflow_provider_peak.__name__
    assert any(ep.group == "apache_airflow_provider" for ep in dist.entry_points)
    assert airflow_provider_peak.__version__ == peak_provider.__version__
    # no example DAGs of ours: Airflow looks for an ``example_dags`` folder beside the module
    assert not any((Path(p) / "example_dags").exists() for p in airflow_provider_peak.__path__)


def _airflow(env: dict[str, str], *args: str) -> str:
    """Run ``airflow *args`` (stopped with its children whatever happens); its output."""
    code, out = run_captured([AIRFLOW, *args], env)
    assert code == 0, f"airflow {' '.join(args)} exited {code}: {out[-3000:]}"
    return out


def _tracebacks(output: str) -> list[str]:
    """Each ``Traceback …`` block of ``output`` with its frames and final exception line."""
    blocks, current = [], None
    for line in output.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            current = [line]
            blocks.append(current)
        elif current is not None:
            current.append(line)
            if line and not line.startswith((" ", "\t")):
                current = None  # the exception line ends the block
    return ["\n".join(b) for b in blocks]


@pytest.mark.slow
@pytest.mark.airflow3
def test_reserialize_in_a_fresh_home_with_defaults_logs_nothing_about_us(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow")  # defaults: SQLite, load_examples = True, dags folder in it
    _airflow(env, "db", "migrate")
    out = _airflow(env, "dags", "reserialize")

    assert "DAG bundles loaded: dags-folder, example_dags" in out, out[-3000:]  # load_examples is on
    assert "Could not load provider module" not in out
    assert "airflow-provider-peak-example-dags" not in out
    errors = [line for line in out.splitlines() if "[error" in line or "ERROR" in line]
    assert not [line for line in errors if OURS.search(line)], errors
    for block in _tracebacks(out):
        assert not OURS.search(block), block
        # the only tracebacks left are Airflow's own example DAGs missing optional extras (e.g. kubernetes)
        assert "/airflow/example_dags/" in block, block
