"""The documented example bodies, POSTed as the docs show them, are accepted and stored as sent."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

SEEDS = json.loads((Path(__file__).parents[1] / "fixtures" / "seed_examples.json").read_text("utf-8"))


@pytest.mark.parametrize("key", sorted(SEEDS))
def test_seed_example_is_accepted_and_stored_exactly(peak_emulator, key):
    example = SEEDS[key]
    path = urlsplit(example["url"]).path
    assert path.startswith("/ingestion-api/api/v2/ingest/object/")
    r = requests.post(
        peak_emulator.url + path,
        data=json.dumps(example["body"]),
        headers={"Authorization": peak_emulator.token, "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    obj = path.rsplit("/", 1)[1]
    data = example["body"]["data"]
    assert r.json() == {
        "status": "SUCCESS",
        "objectName": obj,
        "operationType": example["body"]["operationType"],
        "dryRun": False,
        "received": len(data),
        "accepted": len(data),
        "failed": [],
    }
    assert peak_emulator.rows(obj) == data


def test_base_path_only_serves_configured_prefixes(peak_emulator_factory):
    emu = peak_emulator_factory(tokens="t", base_paths=["/ingestion-api"])
    example = SEEDS["inventory.products"]
    headers = {"Authorization": "t"}
    ok = requests.post(emu.url + urlsplit(example["url"]).path, json=example["body"], headers=headers, timeout=5)
    root = requests.post(emu.url + "/api/v2/ingest/object/INV_PRODUCTS_OOTB", json=example["body"], headers=headers)
    assert ok.status_code == 200 and root.status_code == 404
