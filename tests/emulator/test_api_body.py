"""Request-level checks of ingest calls: body shape, solution, object, endpoints, methods."""

from __future__ import annotations

import pytest

from tests.emulator.helpers import INGEST, PRODUCTS, body, product


def _error(r, status, code):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert set(err) == {"code", "category", "message"}
    return err


def test_malformed_json_is_400(api):
    _error(api.post(INGEST + PRODUCTS, data=b'{"solutionName": '), 400, "DI_E_20005")


def test_nan_is_not_json(api):
    raw = b'{"solutionName": "INV_OOTB", "operationType": "UPSERT", "data": [{"pack_size": NaN}]}'
    _error(api.post(INGEST + PRODUCTS, data=raw), 400, "DI_E_20005")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "JSON object"),
        ({"data": [], "operationType": "UPSERT"}, "'solutionName'"),
        ({"solutionName": 7, "data": [], "operationType": "UPSERT"}, "'solutionName'"),
        ({"solutionName": "INV_OOTB", "operationType": "UPSERT"}, "'data'"),
        ({"solutionName": "INV_OOTB", "data": {"a": 1}, "operationType": "UPSERT"}, "'data'"),
        ({"solutionName": "INV_OOTB", "data": []}, "'operationType'"),
        ({"solutionName": "INV_OOTB", "data": [], "operationType": "upsert"}, "'operationType'"),
        ({"solutionName": "INV_OOTB", "data": [], "operationType": "MERGE"}, "'operationType'"),
        ({"solutionName": "INV_OOTB", "data": [], "operationType": "UPSERT", "dryRun": "yes"}, "'dryRun'"),
    ],
    ids=[
        "not-an-object",
        "no-solution",
        "solution-not-a-string",
        "no-data",
        "data-not-a-list",
        "no-operation",
        "lowercase-operation",
        "unknown-operation",
        "dry-run-not-bool",
    ],
)
def test_body_shape_errors_are_400(api, payload, message):
    err = _error(api.post(INGEST + PRODUCTS, payload), 400, "DI_E_20006")
    assert message in err["message"]
    assert err["category"] == "REQUEST"


def test_unknown_solution_is_400(api):
    err = _error(api.ingest([product()], solution="NOPE"), 400, "DI_E_20007")
    assert "NOPE" in err["message"]


def test_unknown_object_is_404(api):
    _error(api.ingest([product()], obj="INV_NOPE_OOTB"), 404, "DI_E_20008")


def test_object_must_belong_to_the_solution(api):
    # QP_SALE_OOTB exists, but in QP_OOTB (b2c_pricing), not in INV_OOTB.
    _error(api.ingest([{}], obj="QP_SALE_OOTB"), 404, "DI_E_20008")
    # And the full name is required: the base name is not an ingest target.
    _error(api.ingest([product()], obj="PRODUCTS"), 404, "DI_E_20008")


def test_objects_alias_endpoint(api):
    r = api.post("/api/v2/objects/" + PRODUCTS, body([product()]))
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert api.emulator.rows(PRODUCTS) == [product()]


def test_empty_data_is_a_success(api):
    r = api.ingest([])
    assert r.status_code == 200
    assert r.json()["status"] == "SUCCESS" and r.json()["received"] == 0


def test_unknown_endpoint_is_404(api):
    _error(api.post("/api/v3/ingest", {}), 404, "DI_E_20009")
    _error(api.get("/"), 404, "DI_E_20009")


def test_wrong_method_is_405(api):
    r = api.get(INGEST + PRODUCTS)
    _error(r, 405, "DI_E_20010")
    assert r.headers["Allow"] == "POST"
