"""``benchmarks/run.py --smoke``: the benchmark harness runs end to end and writes every section.

Only that it works is checked here, never a timing goal (those are for ``python benchmarks/run.py`` on a
quiet machine; see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# airflow3: the benchmarks measure the Airflow 3.3 stack (their probes use airflow.sdk)
pytestmark = [pytest.mark.airflow3, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SECTIONS = (
    "## Machine",
    "## Commands",
    "## Goals",
    "## 1. Ceiling",
    "## 2. CPU",
    "### Where the time goes",
    "## 3. Memory",
    "## 4. Larger limits",
    "## 5. One tenant, many workers",
    "## Appendix: every run",
)


def test_smoke_run_writes_every_section(tmp_path):
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke", "--output", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    missing = [s for s in SECTIONS if s not in text]
    assert not missing, f"missing sections {missing} in:\n{text}"
    assert "provider" in text and "naive" in text
