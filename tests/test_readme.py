"""The README stays true: generated tables are fresh, and its example test passes outside this repo's tree."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_generated_tables_are_fresh():
    done = subprocess.run(
        [sys.executable, "scripts/readme_tables.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow  # a whole pytest run in a subprocess
def test_readme_example_test_passes_in_a_foreign_project(tmp_path):
    readme = (REPO / "README.md").read_text()
    block = re.search(
        r"<!-- BEGIN README EXAMPLE TEST -->\n```python\n(.*?)```\n<!-- END README EXAMPLE TEST -->", readme, re.S
    )
    assert block, "README example test markers missing"
    (tmp_path / "test_users_dag.py").write_text(block[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout


def test_readme_shows_the_two_commands():
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
