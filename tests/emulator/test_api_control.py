"""The inspection and control endpoints under /_emulator (no auth, loopback only)."""

from __future__ import annotations

from peak_provider.emulator.api import Request
from tests.emulator.helpers import PRODUCTS, product


def test_objects_and_failed_rows(api):
    api.ingest([product(), product(product_id="P2", pack_size="x")])
    objects = api.get(f"/_emulator/objects/{PRODUCTS}", token=None).json()
    assert objects == {"object": PRODUCTS, "count": 1, "rows": [product()]}
    failed = api.get(f"/_emulator/failed/{PRODUCTS}", token=None).json()
    assert failed["object"] == PRODUCTS and failed["count"] == 1
    assert failed["rows"][0]["row"] == product(product_id="P2", pack_size="x")
    assert failed["rows"][0]["errors"][0]["code"] == "DI_E_10002"
    assert api.get("/_emulator/objects/INV_NEVER_WRITTEN", token=None).json()["count"] == 0


def test_objects_summary_lists_every_configured_object(api):
    api.ingest([product()])
    summary = {o["object"]: o for o in api.get("/_emulator/objects").json()["objects"]}
    assert summary[PRODUCTS] == {"object": PRODUCTS, "count": 1, "failed": 0}
    assert "QP_SALE_OOTB" in summary and len(summary) == 17 + 12


def test_stats_and_request_log(api):
    before = api.emulator.stats()
    assert before == {
        "requests_total": 0,
        "requests_by_status": {},
        "rows_accepted": 0,
        "rows_failed": 0,
        "bytes_received": 0,
        "throttled": 0,
        "faults": {},
    }
    r = api.ingest([product(), product(product_id="P2", pack_size=None)])
    r2 = api.ingest([product()], token="bad")
    stats = api.get("/_emulator/stats").json()
    assert stats["requests_total"] == 2
    assert stats["requests_by_status"] == {"200": 1, "401": 1}
    assert (stats["rows_accepted"], stats["rows_failed"]) == (1, 1)
    assert stats["bytes_received"] == len(r.request.body) + len(r2.request.body)
    log = api.get("/_emulator/requests").json()
    assert log["count"] == 2
    first = log["requests"][0]
    assert set(first) == {"t", "method", "path", "status", "rows", "bytes", "fault"}
    assert (first["method"], first["path"], first["status"], first["rows"]) == (
        "POST",
        f"/api/v2/ingest/object/{PRODUCTS}",
        200,
        2,
    )
    assert first["t"] <= log["requests"][1]["t"]
    assert api.emulator.request_log() == log["requests"]
    assert api.emulator.stats() == stats  # control calls are not counted


def test_reset(api):
    api.ingest([product(), product(product_id="P2", pack_size=None)])
    api.emulator.set_faults(error_rate=0.5)
    assert api.post("/_emulator/reset", token=None).json() == {"status": "ok"}
    assert api.emulator.rows(PRODUCTS) == [] and api.emulator.failed_rows(PRODUCTS) == []
    assert api.emulator.stats()["requests_total"] == 0 and api.emulator.request_log() == []
    assert api.emulator.faults.error_rate == 0
    assert api.get("/_emulator/reset").status_code == 405


def test_faults_endpoint_reads_and_replaces(api):
    current = api.get("/_emulator/faults").json()
    assert current["error_rate"] == 0 and current["error_statuses"] == [500, 503] and current["seed"] == 0
    new = api.post("/_emulator/faults", {"error_rate": 1, "error_statuses": [503], "seed": 3}).json()
    assert new["error_rate"] == 1 and new["error_statuses"] == [503] and new["seed"] == 3
    assert new["drop_rate"] == 0  # replaced, not merged
    assert api.get("/_emulator/faults").json() == new
    assert api.ingest([product()]).status_code == 503
    bad = api.post("/_emulator/faults", {"error_rate": 2})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "DI_E_20006"
    assert api.post("/_emulator/faults", {"nope": 1}).status_code == 400


def test_health_and_unknown_control_path(api):
    assert api.get("/_emulator/health").json() == {"status": "ok"}
    assert api.get("/_emulator/nothing").status_code == 404


def test_control_endpoints_answer_loopback_clients_only(peak_emulator):
    outcome = peak_emulator.app.handle(Request("GET", "/_emulator/stats", client_is_loopback=False))
    assert outcome.status == 403
    assert b"DI_E_20013" in outcome.body


def test_control_endpoints_under_the_base_path(api):
    api.ingest([product()])
    assert api.get(f"/ingestion-api/_emulator/objects/{PRODUCTS}").json()["count"] == 1
