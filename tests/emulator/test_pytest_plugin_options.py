"""The pytest plugin's options set the fixtures' rate-limit scope and mode, UPSERT mode and failed-entry shape (run
in a child pytest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

INNER_TEST = """
import requests

from peak_provider.emulator import Limits


def test_options_reach_both_fixtures(peak_emulator, peak_emulator_factory):
    expected = Limits(rate_limit_mode=EXPECTED_MODE, rate_limit_scope=EXPECTED_SCOPE)
    assert peak_emulator.limits == expected and peak_emulator.upsert == EXPECTED_UPSERT
    assert peak_emulator.failed_entries == EXPECTED_FAILED_ENTRIES
    emu = peak_emulator_factory(tokens=["a", "b"], limits=Limits(requests_per_second=1, rate_limit_scope=EXPECTED_SCOPE))
    assert (emu.upsert, emu.failed_entries) == (EXPECTED_UPSERT, EXPECTED_FAILED_ENTRIES)
    url = emu.url + "/api/v2/ingest/object/INV_PRODUCTS_OOTB"
    body = {"solutionName": "INV_OOTB", "operationType": "UPSERT", "data": []}
    statuses = [requests.post(url, json=body, headers={"Authorization": t}, timeout=5).status_code for t in "ab"]
    assert statuses == EXPECTED_STATUSES


def test_an_explicit_argument_wins(peak_emulator_factory):
    emu = peak_emulator_factory(upsert="replace", failed_entries="index+row")
    assert (emu.upsert, emu.failed_entries) == ("replace", "index+row")
"""


def _run_inner(tmp_path: Path, *args: str, ini: str = "", **expected: object) -> subprocess.CompletedProcess[str]:
    source = INNER_TEST
    for name, value in expected.items():
        source = source.replace(name, repr(value))
    (tmp_path / "test_inner.py").write_text(source)
    (tmp_path / "pytest.ini").write_text("[pytest]\n" + ini)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


DEFAULTS = {
    "EXPECTED_MODE": "token-bucket",
    "EXPECTED_SCOPE": "tenant",
    "EXPECTED_UPSERT": "replace",
    "EXPECTED_FAILED_ENTRIES": "index+row",
    "EXPECTED_STATUSES": [200, 429],
}


@pytest.mark.slow  # a whole pytest run in a subprocess
@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        pytest.param((), "", DEFAULTS, id="defaults_are_one_tenant_token_bucket_replace"),
        pytest.param(
            ("--peak-emulator-rate-limit-scope=token", "--peak-emulator-upsert", "merge"),
            "peak_emulator_rate_limit_mode = fixed-window\npeak_emulator_failed_entries = row\n",
            {
                "EXPECTED_MODE": "fixed-window",
                "EXPECTED_SCOPE": "token",
                "EXPECTED_UPSERT": "merge",
                "EXPECTED_FAILED_ENTRIES": "row",
                "EXPECTED_STATUSES": [200, 200],
            },
            id="command_line_and_ini_options",
        ),
    ],
)
def test_options_reach_the_fixtures(tmp_path, args, ini, expected):
    done = _run_inner(tmp_path, *args, ini=ini, **expected)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


@pytest.mark.slow  # a whole pytest run in a subprocess
def test_a_bad_ini_value_is_a_usage_error(tmp_path):
    done = _run_inner(
        tmp_path,
        ini="peak_emulator_rate_limit_scope = solution\n",
        **DEFAULTS,
    )
    assert done.returncode != 0
    assert "peak_emulator_rate_limit_scope = 'solution'" in done.stdout + done.stderr
