"""Server-side row validation: one test per rule; each bad row is reported and kept aside."""

from __future__ import annotations

import pytest

from peak_provider.emulator import errors
from peak_provider.emulator.validation import Column, RowValidator, valid_timestamp
from tests.emulator.helpers import PRODUCTS, product


def _only_failure(api, rows, obj=PRODUCTS, **kwargs):
    r = api.ingest(rows, obj=obj, **kwargs)
    assert r.status_code == 200, r.text
    result = r.json()
    assert len(result["failed"]) == 1, result
    return result, result["failed"][0]


def _codes(failure):
    return [(e["code"], e["field"]) for e in failure["errors"]]


def test_missing_required_attribute(api):
    row = product()
    del row["pack_size"]
    result, failure = _only_failure(api, [row])
    assert _codes(failure) == [("DI_E_10001", "pack_size")]
    assert result["status"] == "FAILED" and result["accepted"] == 0


def test_wrong_type(api):
    _, failure = _only_failure(api, [product(pack_size="12")])
    assert _codes(failure) == [("DI_E_10002", "pack_size")]
    assert failure["errors"][0]["category"] == "VALIDATION"


def test_integer_rejects_bool_and_float_string_rejects_number(api):
    r = api.ingest(
        [
            product(product_id="A", pack_size=True),
            product(product_id="B", pack_size=12.0),
            product(product_id="C", source_id=5),
        ]
    )
    assert [_codes(f) for f in r.json()["failed"]] == [
        [("DI_E_10002", "pack_size")],
        [("DI_E_10002", "pack_size")],
        [("DI_E_10002", "source_id")],
    ]


def test_float_accepts_int_and_boolean_needs_bool(api):
    sale = {"location_id": "L", "product_id": "P", "sold_at": "2025-01-28T14:30:00Z", "demand_units": 2}
    assert api.ingest([sale], obj="QP_SALE_OOTB", solution="QP_OOTB").json()["accepted"] == 1
    location = {"location_id": "L", "is_store": 1, "is_dc": False, "is_factory": False}
    location["updated_at"] = "2025-01-15 08:00:00"
    _, failure = _only_failure(api, [location], obj="INV_LOCATIONS_OOTB")
    assert _codes(failure) == [("DI_E_10002", "is_store")]


def test_null_not_allowed(api):
    _, failure = _only_failure(api, [product(source_id=None)])
    assert _codes(failure) == [("DI_E_10003", "source_id")]
    # a nullable attribute takes null
    assert api.ingest([product(product_name=None)]).json()["accepted"] == 1


def test_bad_timestamp_format(api):
    r = api.ingest(
        [
            product(product_id="A", updated_at="2025-01-15T08:00:00Z"),  # the b2c format, not inventory's
            product(product_id="B", updated_at="2025-02-30 08:00:00"),  # not a real date
            product(product_id="C", updated_at="2025-01-15 8:00:00"),
            product(product_id="D", updated_at="2025-01-15 08:00:00"),
        ]
    )
    assert r.json()["status"] == "PARTIAL_SUCCESS"
    assert [_codes(f) for f in r.json()["failed"]] == [[("DI_E_10004", "updated_at")]] * 3


def test_timestamp_format_follows_the_solution(api, peak_emulator_factory, make_api):
    sale = {"location_id": "L", "product_id": "P", "sold_at": "2025-01-28 14:30:00"}
    _, failure = _only_failure(api, [sale], obj="QP_SALE_OOTB", solution="QP_OOTB")
    assert _codes(failure) == [("DI_E_10004", "sold_at")]
    emu = peak_emulator_factory(solutions=["QP:b2c_pricing:QP_:_OOTB:YYYY-MM-DD HH:MM:SS+00:00"])
    other = make_api(emu)
    sale["sold_at"] = "2025-01-28 14:30:00+00:00"
    assert other.ingest([sale], obj="QP_SALE_OOTB", solution="QP").json()["accepted"] == 1


def test_bad_date(api):
    stock = {"product_id": "P", "location_id": "L", "day_date": "2025-13-01", "available_stock": 3}
    _, failure = _only_failure(api, [stock], obj="INV_STOCK_OOTB")
    assert _codes(failure) == [("DI_E_10004", "day_date")]


def test_unknown_attribute(api):
    _, failure = _only_failure(api, [product(colour="blue")])
    assert _codes(failure) == [("DI_E_10005", "colour")]


def test_primary_key_null_or_missing(api):
    missing = product()
    del missing["product_id"]
    r = api.ingest([product(updated_at=None), missing])
    assert [_codes(f) for f in r.json()["failed"]] == [
        [("DI_E_10006", "updated_at")],
        [("DI_E_10006", "product_id")],
    ]


def test_primary_key_part_that_is_optional_in_the_catalogue(api):
    # forecast declares product_id optional and nullable, but it is part of the primary key
    r = api.ingest([{"location_id": "L", "cutoff_date": "2025-01-01"}], obj="INV_FORECAST_OOTB")
    assert [_codes(f) for f in r.json()["failed"]] == [[("DI_E_10006", "product_id")]]


def test_row_not_an_object(api):
    _, failure = _only_failure(api, [product(), ["P1", "S1"]])
    assert failure == {
        "index": 1,
        "row": ["P1", "S1"],
        "errors": [
            {
                "code": "DI_E_10007",
                "category": "VALIDATION",
                "field": None,
                "message": "row must be an object, got array",
            }
        ],
    }


def test_string_longer_than_65535_fails(api):
    assert api.ingest([product(product_description="x" * 65535)]).json()["accepted"] == 1
    _, failure = _only_failure(api, [product(product_description="x" * 65536)])
    assert _codes(failure) == [("DI_E_10008", "product_description")]


def test_attribute_given_twice(api):
    _, failure = _only_failure(api, [{**product(), "PACK_SIZE": 12}])
    assert _codes(failure) == [("DI_E_10009", "PACK_SIZE")]


def test_keys_match_case_insensitively_and_are_stored_under_catalogue_names(api):
    row = {"PRODUCT_ID": "P1", "Source_Id": "S1", "pack_size": 1, "UPDATED_AT": "2025-01-15 08:00:00"}
    assert api.ingest([row]).json()["status"] == "SUCCESS"
    assert api.emulator.rows(PRODUCTS) == [
        {"product_id": "P1", "source_id": "S1", "pack_size": 1, "updated_at": "2025-01-15 08:00:00"}
    ]


def test_all_errors_of_a_row_are_reported_with_the_row_as_sent(api):
    row = {"product_id": None, "pack_size": "x", "foo": 1, "updated_at": "2025-01-15 08:00:00"}
    _, failure = _only_failure(api, [row])
    assert failure["index"] == 0 and failure["row"] == row
    assert sorted(_codes(failure)) == [
        ("DI_E_10001", "source_id"),
        ("DI_E_10002", "pack_size"),
        ("DI_E_10005", "foo"),
        ("DI_E_10006", "product_id"),
    ]


def test_partial_success_stores_valid_rows_and_failed_rows(api):
    r = api.ingest([product(), product(product_id="P2", pack_size=None), product(product_id="P3")])
    result = r.json()
    assert (result["status"], result["received"], result["accepted"]) == ("PARTIAL_SUCCESS", 3, 2)
    assert [row["product_id"] for row in api.emulator.rows(PRODUCTS)] == ["P1", "P3"]
    failed = api.emulator.failed_rows(PRODUCTS)
    assert len(failed) == 1
    assert failed[0]["index"] == 1 and failed[0]["row"]["product_id"] == "P2"
    assert failed[0]["errors"] == result["failed"][0]["errors"]
    assert failed[0]["operationType"] == "UPSERT"


def test_json_columns_take_any_value():
    v = RowValidator(
        [Column("id", "string", True, False, primary_key=True), Column("meta", "json", False, True)],
        ["id"],
        "YYYY-MM-DD HH:MM:SS",
    )
    valid, failed = v.validate([{"id": "a", "meta": {"x": [1, None]}}, {"id": "b", "meta": 1.5}, {"id": "c"}])
    assert len(valid) == 3 and failed == []


@pytest.mark.parametrize(
    ("fmt", "value", "ok"),
    [
        ("YYYY-MM-DDTHH:MM:SSZ", "2024-02-29T23:59:59Z", True),
        ("YYYY-MM-DDTHH:MM:SSZ", "2025-02-29T00:00:00Z", False),  # not a leap year
        ("YYYY-MM-DDTHH:MM:SSZ", "2025-04-31T00:00:00Z", False),
        ("YYYY-MM-DDTHH:MM:SSZ", "2025-01-01T24:00:00Z", False),
        ("YYYY-MM-DDTHH:MM:SSZ", "2025-01-01T00:60:00Z", False),
        ("YYYY-MM-DDTHH:MM:SSZ", "2025-01-01 00:00:00Z", False),
        ("YYYY-MM-DDTHH:MM:SSZ", "2025-01-01T00:00:00", False),
        ("YYYY-MM-DDTHH:MM:SSZ", "2025-01-01T00:00:00.5Z", False),
        ("YYYY-MM-DDTHH:MM:SSZ", "\uff12025-01-01T00:00:00Z", False),  # a non-ASCII digit (fullwidth 2)
        ("YYYY-MM-DD HH:MM:SS", "2025-12-31 23:59:59", True),
        ("YYYY-MM-DD HH:MM:SS", "2025-12-31T23:59:59", False),
        ("YYYY-MM-DD HH:MM:SS", "0000-01-01 00:00:00", False),
        ("YYYY-MM-DD HH:MM:SS+00:00", "2025-12-31 23:59:59+00:00", True),
        ("YYYY-MM-DD HH:MM:SS+00:00", "2025-12-31 23:59:59+01:00", False),
    ],
)
def test_timestamp_formats_are_exact(fmt, value, ok):
    assert valid_timestamp(fmt, value) is ok
    validator = RowValidator([Column("at", "timestamp", True, False, primary_key=True)], ["at"], fmt)
    valid, failed = validator.validate([{"at": value}])
    assert (len(valid), [e["code"] for f in failed for e in f["errors"]]) == (
        (1, []) if ok else (0, [errors.BAD_FORMAT])
    )


def _two_column_validator() -> RowValidator:
    columns = [Column("id", "string", True, False, primary_key=True), Column("n", "integer", True, False)]
    return RowValidator(columns, ["id"], "YYYY-MM-DD HH:MM:SS")


def test_rows_of_one_shape_are_checked_one_by_one():
    """Rows with the same keys share a cached plan; a bad value still gets its row's every error."""
    v = _two_column_validator()
    rows = [
        {"id": "a", "n": 1},
        {"id": "b", "n": "2"},
        {"id": None, "n": 3},
        {"id": "c", "n": None},
        {"id": "d", "n": 4},
    ]
    valid, failed = v.validate(rows)
    assert valid == [{"id": "a", "n": 1}, {"id": "d", "n": 4}]
    assert [(f["index"], [(e["code"], e["field"]) for e in f["errors"]]) for f in failed] == [
        (1, [(errors.WRONG_TYPE, "n")]),
        (2, [(errors.PRIMARY_KEY_MISSING, "id")]),
        (3, [(errors.NULL_NOT_ALLOWED, "n")]),
    ]


def test_a_shape_that_fails_whatever_its_values_is_checked_in_full_every_time():
    v = _two_column_validator()
    rows = [{"ID": "a", "n": 1}, {"id": "b"}, {"id": "c", "n": 1, "x": 0}, {"ID": "d", "n": 2}, {"id": "e", "n": 5}]
    valid, failed = v.validate(rows)
    assert valid == [{"id": "a", "n": 1}, {"id": "d", "n": 2}, {"id": "e", "n": 5}]  # keys spelt as the columns
    assert [(f["index"], [(e["code"], e["field"]) for e in f["errors"]]) for f in failed] == [
        (1, [(errors.MISSING_REQUIRED, "n")]),
        (2, [(errors.UNKNOWN_ATTRIBUTE, "x")]),
    ]


@pytest.mark.parametrize(
    ("shape", "keys"),
    [("index+row", {"index", "row", "errors"}), ("index", {"index", "errors"}), ("row", {"row", "errors"})],
)
def test_failed_entries_name_their_row_as_configured_and_the_store_keeps_both(
    peak_emulator_factory, make_api, shape, keys
):
    emulator = peak_emulator_factory(failed_entries=shape)
    api = make_api(emulator)
    result = api.ingest([product(), product(product_id="P2", pack_size=None)]).json()
    (entry,) = result["failed"]
    assert (
        set(entry) == keys
        and entry.get("index", 1) == 1
        and entry.get("row", {"product_id": "P2"})["product_id"] == "P2"
    )
    assert emulator.failed_entries == shape
    (stored,) = emulator.failed_rows(PRODUCTS)
    assert (stored["index"], stored["row"]["product_id"]) == (1, "P2")


def test_an_unknown_failed_entry_shape_is_refused():
    from peak_provider.emulator.server import Emulator

    with pytest.raises(ValueError, match="failed-entry shape 'rows'"):
        Emulator(failed_entries="rows")
