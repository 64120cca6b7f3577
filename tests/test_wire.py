import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from peak_provider.exceptions import PeakConfigError
from peak_provider.resources import get_application
from peak_provider.result import Rejection
from peak_provider.wire import RowEncoder, failed_entries

PRODUCTS = get_application("inventory").resource("products")
SALE = get_application("b2c_pricing").resource("sale")
PO = get_application("b2c_pricing").resource("purchase_order")


def product(**overrides):
    row = {
        "product_id": "P1",
        "source_id": "S1",
        "pack_size": 12,
        "updated_at": datetime(2025, 1, 15, 8, 0, 0),
    }
    row.update(overrides)
    return row


def raw(encoder, row):
    """A mapping row -> its wire bytes (or its Rejection)."""
    return encoder.encode(row, encoder.plan(tuple(row), positional=False))


def encode(encoder, row):
    out = raw(encoder, row)
    return json.loads(out) if isinstance(out, bytes) else out


@pytest.fixture
def inv():
    return RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS")


@pytest.fixture
def b2c():
    return RowEncoder(SALE, "YYYY-MM-DDTHH:MM:SSZ")


def test_inventory_timestamps(inv):
    assert encode(inv, product())["updated_at"] == "2025-01-15 08:00:00"
    aware = datetime(2025, 1, 15, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert encode(inv, product(updated_at=aware))["updated_at"] == "2025-01-15 08:00:00"
    assert encode(inv, product(updated_at="2025-01-15T08:00:00Z"))["updated_at"] == "2025-01-15 08:00:00"
    assert encode(inv, product(updated_at=date(2025, 1, 15)))["updated_at"] == "2025-01-15 00:00:00"


def test_b2c_timestamps_are_iso_z(b2c):
    row = {"location_id": "L", "product_id": "P", "sold_at": datetime(2025, 1, 28, 14, 30, tzinfo=UTC)}
    assert encode(b2c, row)["sold_at"] == "2025-01-28T14:30:00Z"
    row["sold_at"] = "2025-01-28 14:30:00"
    assert encode(b2c, row)["sold_at"] == "2025-01-28T14:30:00Z"


def test_naive_datetimes_read_in_source_timezone():
    enc = RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS", source_timezone="Europe/London")
    summer = product(updated_at=datetime(2025, 7, 1, 12, 0))
    assert encode(enc, summer)["updated_at"] == "2025-07-01 11:00:00"


def test_unparseable_timestamp_is_rejected(inv):
    out = encode(inv, product(updated_at="yesterday"))
    assert isinstance(out, Rejection)
    assert out.field == "updated_at" and "cannot parse 'yesterday'" in out.reason
    assert out.key == {"product_id": "P1", "updated_at": "yesterday"}
    assert out.reason.startswith("products:")


def test_integers(inv):
    assert encode(inv, product(pack_size=2.0))["pack_size"] == 2
    assert encode(inv, product(pack_size=Decimal("12")))["pack_size"] == 12
    for bad in (2.5, Decimal("2.5"), "12", True, float("nan"), float("inf")):
        out = encode(inv, product(pack_size=bad))
        assert isinstance(out, Rejection), bad
        assert out.field == "pack_size"


def test_decimals_are_sent_with_their_own_digits(b2c):
    row = {"location_id": "L", "product_id": "P", "sold_at": "2025-01-28T14:30:00Z", "demand_value": Decimal("399.98")}
    assert b'"demand_value":399.98' in raw(b2c, row)
    row["demand_value"] = Decimal("2.500")
    assert b'"demand_value":2.500}' in raw(b2c, row)
    row["demand_value"] = Decimal("0.12345678901234567890123")  # more digits than a float keeps: none lost
    assert b'"demand_value":0.12345678901234567890123}' in raw(b2c, row)
    for bad, reason in (
        (Decimal("NaN"), "not a finite number"),
        (math.inf, "not a finite number"),
        (Decimal("1E+308"), "too large for a float"),
    ):
        row["demand_value"] = bad
        out = encode(b2c, row)
        assert isinstance(out, Rejection) and out.field == "demand_value" and reason in out.reason, bad
    row["demand_value"] = Decimal("9.99E+307")  # still a finite float when read back
    assert encode(b2c, row)["demand_value"] == 9.99e307


class Float64(float):
    """What numpy.float64 is to the encoder: a float subclass."""


def test_number_subclasses_and_huge_ints(b2c, inv):
    row = {"location_id": "L", "product_id": "P", "sold_at": "2025-01-28T14:30:00Z", "demand_value": Float64(1.5)}
    assert encode(b2c, row)["demand_value"] == 1.5
    row["demand_value"] = Float64("nan")
    assert isinstance(encode(b2c, row), Rejection)
    out = encode(inv, product(pack_size=10**5000))  # past Python's int-to-str limit: rejected, not a crash
    assert isinstance(out, Rejection) and out.field == "pack_size"


def test_aware_timestamps_in_a_zone_other_than_utc(inv):
    from zoneinfo import ZoneInfo

    paris = datetime(2025, 7, 1, 14, 0, 5, 999999, tzinfo=ZoneInfo("Europe/Paris"))
    assert encode(inv, product(updated_at=paris))["updated_at"] == "2025-07-01 12:00:05"
    utc_zone = datetime(2025, 7, 1, 14, 0, 5, tzinfo=ZoneInfo("Etc/UTC"))  # what psycopg returns
    assert encode(inv, product(updated_at=utc_zone))["updated_at"] == "2025-07-01 14:00:05"
    assert encode(inv, product(updated_at=datetime(99, 1, 2, 3, 4, 5)))["updated_at"] == "0099-01-02 03:04:05"


def test_dates():
    enc = RowEncoder(PO, "YYYY-MM-DDTHH:MM:SSZ")
    base = {"order_number": "O1", "product_id": "P1"}
    assert encode(enc, {**base, "receipt_date": date(2025, 2, 1)})["receipt_date"] == "2025-02-01"
    assert encode(enc, {**base, "receipt_date": "2025-02-01"})["receipt_date"] == "2025-02-01"
    assert encode(enc, {**base, "receipt_date": datetime(2025, 2, 1)})["receipt_date"] == "2025-02-01"
    assert isinstance(encode(enc, {**base, "receipt_date": datetime(2025, 2, 1, 10)}), Rejection)
    assert isinstance(encode(enc, {**base, "receipt_date": "02/01/2025"}), Rejection)


def test_booleans():
    enc = RowEncoder(get_application("inventory").resource("locations"), "YYYY-MM-DD HH:MM:SS")
    row = {
        "location_id": "L",
        "is_store": 1,
        "is_dc": False,
        "is_factory": "false",
        "updated_at": "2025-01-01 00:00:00",
    }
    assert encode(enc, row) == {**row, "is_store": True, "is_factory": False}
    assert isinstance(encode(enc, {**row, "is_store": 2}), Rejection)


def test_strings_accept_ints_but_not_floats(inv):
    assert encode(inv, product(product_id=42))["product_id"] == "42"
    assert isinstance(encode(inv, product(product_id=4.2)), Rejection)


def test_unicode_is_sent_as_utf8(inv):
    name = 'Café "Ünïcødé" 🚀 ' + "x" * 5000
    raw = inv.encode(product(product_name=name), inv.plan(tuple(product(product_name=name)), positional=False))
    assert json.loads(raw)["product_name"] == name
    assert "🚀".encode() in raw


def test_columns_match_case_insensitively_and_unselected_columns_are_omitted(inv):
    row = {"PRODUCT_ID": "P1", "Source_Id": "S1", "PACK_SIZE": 1, "UPDATED_AT": "2025-01-01 00:00:00"}
    assert encode(inv, row) == {
        "product_id": "P1",
        "source_id": "S1",
        "pack_size": 1,
        "updated_at": "2025-01-01 00:00:00",
    }


def test_null_optional_field_is_sent_as_null(inv):
    assert encode(inv, product(product_name=None))["product_name"] is None


def test_missing_required_field(inv):
    row = product()
    del row["source_id"]
    out = encode(inv, row)
    assert isinstance(out, Rejection)
    assert out.field == "source_id" and "required field 'source_id' is missing" in out.reason
    assert out.key == {"product_id": "P1", "updated_at": "2025-01-15T08:00:00"}


def test_null_primary_key_part(inv):
    out = encode(inv, product(product_id=None))
    assert isinstance(out, Rejection)
    assert out.field == "product_id" and "primary-key part is null" in out.reason


def test_null_required_field(inv):
    out = encode(inv, product(source_id=None))
    assert isinstance(out, Rejection) and "null is not allowed" in out.reason


def test_unknown_column_unless_declared_custom_attribute():
    row = product(supplier_code="X")
    out = encode(RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS"), row)
    assert isinstance(out, Rejection) and "unknown column 'supplier_code'" in out.reason
    enc = RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS", custom_attributes={"SUPPLIER_CODE": "string"})
    assert encode(enc, row)["SUPPLIER_CODE"] == "X"


def test_custom_attributes_must_be_uppercase():
    with pytest.raises(PeakConfigError, match="UPPERCASE"):
        RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS", custom_attributes={"supplier_code": "string"})


def test_column_map():
    enc = RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS", column_map={"sku": "product_id"})
    row = product()
    row["sku"] = row.pop("product_id")
    assert encode(enc, row)["product_id"] == "P1"


def test_positional_rows():
    enc = RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS")
    plan = enc.plan(["product_id", "source_id", "pack_size", "updated_at"], positional=True)
    assert json.loads(enc.encode(("P1", "S1", 3, "2025-01-01 00:00:00"), plan))["pack_size"] == 3


def test_failed_entries_are_parsed_tolerantly():
    payload = {
        "failed": [
            {
                "index": 1,
                "row": {"a": 1},
                "errors": [{"code": "DI_E_1", "category": "VALIDATION", "field": "f", "message": "m"}],
            },
            {"rowIndex": 2, "error": "boom"},
            {"record": {"a": 2}, "errorCode": "DI_E_2", "errorMessage": "bad"},
            "just a string",
            {"weird": True},
        ]
    }
    entries = failed_entries(payload)
    assert entries[0] == {"index": 1, "row": {"a": 1}, "field": "f", "code": "DI_E_1", "reason": "[VALIDATION] f: m"}
    assert entries[1]["index"] == 2 and entries[1]["reason"] == "boom"
    assert entries[2]["row"] == {"a": 2} and entries[2]["code"] == "DI_E_2"
    assert "just a string" in entries[3]["reason"]
    assert "weird" in entries[4]["reason"]
    assert failed_entries({"status": "SUCCESS"}) == []
    assert failed_entries(None) == []


def test_a_row_with_no_known_column_is_rejected_not_sent_as_an_empty_object():
    from peak_provider.resources import Field, Resource

    loose = Resource("loose", "LOOSE", (Field("note", "string", False, True),), (), (), "APPEND", "test")
    enc = RowEncoder(loose, "YYYY-MM-DD HH:MM:SS")
    assert encode(enc, {"note": "x"}) == {"note": "x"}
    out = enc.encode((), enc.plan((), positional=True))
    assert isinstance(out, Rejection) and out.reason == "loose: no columns to send"
