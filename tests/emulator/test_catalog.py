"""Schema endpoints: solutions, object schemas, add-attribute then ingest with the new column."""

from __future__ import annotations

import pytest

from peak_provider.resources import get_application
from tests.emulator.helpers import PRODUCTS, product


def test_solutions(api):
    r = api.get("/api/v2/schema/solutions")
    assert r.status_code == 200
    assert r.json() == {
        "solutions": [
            {
                "solutionName": "INV_OOTB",
                "prefix": "INV_",
                "suffix": "_OOTB",
                "targetSchemaName": "STAGE",
                "tableCount": len(get_application("inventory").resources),
            },
            {
                "solutionName": "QP_OOTB",
                "prefix": "QP_",
                "suffix": "_OOTB",
                "targetSchemaName": "STAGE",
                "tableCount": len(get_application("b2c_pricing").resources),
            },
        ]
    }


def test_schema_of_a_solution(api):
    schema = api.get("/api/v2/schema", params={"solutionName": "INV_OOTB"}).json()
    assert schema["solutionName"] == "INV_OOTB"
    objects = {o["objectName"]: o for o in schema["objects"]}
    products = objects[PRODUCTS]
    assert products["baseName"] == "PRODUCTS"
    assert products["primaryKeys"] == ["product_id", "updated_at"]
    assert products["columns"][0] == {
        "name": "product_id",
        "dataType": "string",
        "required": True,
        "nullable": False,
        "custom": False,
    }
    assert {c["name"] for c in products["columns"]} >= {"pack_size", "updated_at"}
    assert len(objects) == len(get_application("inventory").resources)


def test_schema_of_an_unknown_solution_is_404_and_a_missing_one_400(api):
    r = api.get("/api/v2/schema", params={"solutionName": "NOPE"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "DI_E_20007"
    assert api.get("/api/v2/schema").status_code == 400


def _add(api, obj="PRODUCTS", **spec):
    return api.post(f"/api/v2/schema/{obj}/add-attribute", {"solutionName": "INV_OOTB", **spec})


def test_add_attribute_then_ingest_with_it(api):
    r = _add(api, columnName="COLOUR", dataType="string")
    assert r.status_code == 200
    assert r.json() == {
        "status": "SUCCESS",
        "objectName": PRODUCTS,
        "column": {
            "name": "COLOUR",
            "dataType": "string",
            "required": False,
            "nullable": True,
            "custom": True,
            "defaultValue": None,
            "validations": [],
        },
    }
    assert api.ingest([product(COLOUR="blue"), product(product_id="P2", colour="red")]).json()["accepted"] == 2
    assert [r.get("COLOUR") for r in api.emulator.rows(PRODUCTS)] == ["blue", "red"]
    assert api.ingest([product(product_id="P3", COLOUR=5)]).json()["failed"][0]["errors"][0]["code"] == "DI_E_10002"
    schema = api.get("/api/v2/schema", params={"solutionName": "INV_OOTB"}).json()
    columns = next(o for o in schema["objects"] if o["objectName"] == PRODUCTS)["columns"]
    assert columns[-1]["name"] == "COLOUR" and columns[-1]["custom"] is True


def test_add_attribute_by_full_name_with_datetime_and_validations(api):
    r = _add(
        api,
        obj=PRODUCTS,
        columnName="LAUNCHED_AT",
        dataType="datetime",
        validations=[{"type": "nonNull"}],
    )
    assert r.status_code == 200 and r.json()["column"]["dataType"] == "timestamp"
    assert (
        _add(
            api,
            columnName="CODE",
            dataType="string",
            validations=[{"type": "minLength", "value": 2}, {"type": "maxLength", "value": 3}],
        ).status_code
        == 200
    )
    rows = [
        product(product_id="ok", LAUNCHED_AT="2025-01-01 00:00:00", CODE="ab"),
        product(product_id="null", LAUNCHED_AT=None),
        product(product_id="missing"),
        product(product_id="format", LAUNCHED_AT="2025-01-01T00:00:00Z"),
        product(product_id="short", LAUNCHED_AT="2025-01-01 00:00:00", CODE="a"),
        product(product_id="long", LAUNCHED_AT="2025-01-01 00:00:00", CODE="abcd"),
    ]
    result = api.ingest(rows).json()
    assert result["accepted"] == 1
    codes = {rows[f["index"]]["product_id"]: [e["code"] for e in f["errors"]] for f in result["failed"]}
    assert codes == {
        "null": ["DI_E_10003"],
        "missing": ["DI_E_10001"],
        "format": ["DI_E_10004"],
        "short": ["DI_E_10008"],
        "long": ["DI_E_10008"],
    }


def test_non_null_attribute_with_a_default_may_be_omitted(api):
    assert (
        _add(api, columnName="TIER", dataType="integer", defaultValue=1, validations=[{"type": "nonNull"}]).status_code
        == 200
    )
    assert api.ingest([product()]).json()["accepted"] == 1
    assert api.emulator.rows(PRODUCTS) == [product()]  # stored as sent


@pytest.mark.parametrize(
    ("spec", "status", "code"),
    [
        ({"columnName": "colour", "dataType": "string"}, 400, "DI_E_20011"),
        ({"columnName": "COLOUR", "dataType": "text"}, 400, "DI_E_20011"),
        (
            {"columnName": "COLOUR", "dataType": "integer", "validations": [{"type": "maxLength", "value": 2}]},
            400,
            "DI_E_20011",
        ),
        ({"columnName": "COLOUR", "dataType": "integer", "defaultValue": "x"}, 400, "DI_E_20011"),
        ({"columnName": "COLOUR", "dataType": "string", "validations": [{"type": "unique"}]}, 400, "DI_E_20011"),
        ({"columnName": "PACK_SIZE", "dataType": "integer"}, 409, "DI_E_20012"),
    ],
    ids=["lowercase-name", "bad-type", "length-on-integer", "bad-default", "bad-validation", "existing-column"],
)
def test_add_attribute_errors(api, spec, status, code):
    r = _add(api, **spec)
    assert r.status_code == status and r.json()["error"]["code"] == code


def test_add_attribute_to_an_unknown_object_or_solution(api):
    assert _add(api, obj="NOPE", columnName="X", dataType="string").status_code == 404
    r = api.post(
        "/api/v2/schema/PRODUCTS/add-attribute", {"solutionName": "NOPE", "columnName": "X", "dataType": "string"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "DI_E_20007"
    assert api.post("/api/v2/schema/PRODUCTS/add-attribute", {"columnName": "X"}, token=None).status_code == 401


def test_reset_forgets_custom_attributes(api):
    _add(api, columnName="COLOUR", dataType="string")
    api.emulator.reset()
    assert api.ingest([product(COLOUR="blue")]).json()["failed"][0]["errors"][0]["code"] == "DI_E_10005"
