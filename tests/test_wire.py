import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from peak_provider.exceptions import PeakConfigError
from peak_provider.resources import get_application
from peak_provider.result import Rejection
from peak_provider.wire import RowEncoder

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
    enc = RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS", source_zone=ZoneInfo("Europe/London"))
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
        (Decimal("sNaN"), "not a finite number"),
        (math.inf, "not a finite number"),
        (Decimal("1.8E+308"), "a double reads it as infinity"),
        (Decimal("1E+400"), "a double reads it as infinity"),
        (10**400, "a double reads it as infinity"),
        (Decimal("1E-400"), "a double reads it as 0"),
        (Decimal("-2E-324"), "a double reads it as 0"),
    ):
        row["demand_value"] = bad
        out = encode(b2c, row)
        assert isinstance(out, Rejection) and out.field == "demand_value" and reason in out.reason, bad
    for fine in (Decimal("9.99E+307"), Decimal("1E+308"), Decimal("5E-324"), Decimal("1.5E-310"), 5e-324, -0.0):
        row["demand_value"] = fine  # still the same finite, non-zero (or zero) number when read back as a double
        assert encode(b2c, row)["demand_value"] == float(fine), fine
    for zero in (Decimal("0"), Decimal("0E-500"), Decimal("-0E+500"), 0.0, 0):
        row["demand_value"] = zero
        assert encode(b2c, row)["demand_value"] == 0, zero


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


def test_a_row_with_no_known_column_is_rejected_not_sent_as_an_empty_object():
    from peak_provider.resources import Field, Resource

    loose = Resource("loose", "LOOSE", (Field("note", "string", False, True),), (), (), "APPEND", "test")
    enc = RowEncoder(loose, "YYYY-MM-DD HH:MM:SS")
    assert encode(enc, {"note": "x"}) == {"note": "x"}
    out = enc.encode((), enc.plan((), positional=True))
    assert isinstance(out, Rejection) and out.reason == "loose: no columns to send"


def test_integers_are_int64(inv):
    """Peak's integer range is undocumented: int64 is our assumption, and the reason says so."""
    for fine in (2**63 - 1, -(2**63), Decimal("9223372036854775807"), 2.0**62):
        assert encode(inv, product(pack_size=fine))["pack_size"] == int(fine)
    for bad in (2**63, -(2**63) - 1, Decimal("1E+19"), Decimal("1E+999999999"), 1e19, 10**5000):
        out = encode(inv, product(pack_size=bad))
        assert isinstance(out, Rejection) and out.field == "pack_size", bad
        assert "outside int64, the range we assume" in out.reason and len(out.reason) <= 300, out.reason


def test_lone_surrogates_reject_the_row_and_nul_is_kept(inv):
    out = encode(inv, product(product_name="caf\udce9 au lait"))  # what surrogateescape makes of latin-1 bytes
    assert isinstance(out, Rejection) and out.field == "product_name"
    assert "lone surrogate (U+DCE9) at character 3" in out.reason
    enc = RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS", custom_attributes={"ATTRS": "json"})
    out = encode(enc, product(ATTRS={"k\ud800": 1}))
    assert isinstance(out, Rejection) and out.field == "ATTRS" and "U+D800" in out.reason
    key = encode(inv, product(product_id="P\ud800", pack_size="x")).key  # the key itself holds a surrogate
    json.dumps(key, ensure_ascii=False).encode()
    sent = raw(inv, product(product_name="a\x00b"))
    assert b'"product_name":"a\\u0000b"' in sent and json.loads(sent)["product_name"] == "a\x00b"


@pytest.mark.parametrize(
    "value",
    [
        datetime(9999, 12, 31, 23, 59, 59),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=ZoneInfo("America/New_York")),
        "9999-12-31 23:59:59",
    ],
)
def test_datetimes_past_year_9999_in_utc_reject_the_row(value):
    enc = RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS", source_zone=ZoneInfo("America/New_York"))
    out = encode(enc, product(updated_at=value))
    assert isinstance(out, Rejection) and out.field == "updated_at"
    assert "9999-12-31T23:59:59" in out.reason and "outside years 1..9999 once converted to UTC" in out.reason
    assert encode(enc, product(updated_at=datetime(9999, 12, 31, 18, 59, 59)))["updated_at"] == "9999-12-31 23:59:59"


def test_year_1_east_of_utc_rejects_the_row():
    enc = RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS", source_zone=ZoneInfo("Asia/Tokyo"))
    for value in (datetime(1, 1, 1, 3), datetime(1, 1, 1, 3, tzinfo=ZoneInfo("Asia/Tokyo"))):
        out = encode(enc, product(updated_at=value))
        assert isinstance(out, Rejection) and "outside years 1..9999" in out.reason, value
    at_930 = encode(enc, product(updated_at=datetime(1, 1, 1, 9, 30)))
    assert at_930["updated_at"] == "0001-01-01 00:11:01"  # Tokyo's local mean time then: +09:18:59


def test_dst_ambiguous_and_nonexistent_times_follow_fold_0_and_are_counted():
    enc = RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS", source_zone=ZoneInfo("America/New_York"))
    at = [
        (datetime(2025, 11, 2, 1, 30), "2025-11-02 05:30:00"),  # shown twice: the earlier (EDT) instant
        (datetime(2025, 11, 2, 1, 30, fold=1), "2025-11-02 06:30:00"),  # said to be the second: the later one
        (datetime(2025, 3, 9, 2, 30), "2025-03-09 07:30:00"),  # never shown: shifted forward (03:30 EDT)
        (datetime(2025, 3, 9, 1, 59, 59), "2025-03-09 06:59:59"),  # the same days, away from the change
        (datetime(2025, 3, 9, 3, 0), "2025-03-09 07:00:00"),
        (datetime(2025, 11, 2, 2, 0), "2025-11-02 07:00:00"),
        (datetime(2025, 7, 1, 12, 0), "2025-07-01 16:00:00"),
    ]
    for value, expected in at:
        assert encode(enc, product(updated_at=value))["updated_at"] == expected, value
    assert (enc.ambiguous_times, enc.nonexistent_times, enc.truncated_subseconds) == (2, 1, 0)
    utc = RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS")
    for value, _ in at:
        encode(utc, product(updated_at=value))
    assert (utc.ambiguous_times, utc.nonexistent_times) == (0, 0)


@pytest.mark.parametrize(
    "zone", ["America/New_York", "Australia/Lord_Howe", "America/Havana", "America/Santiago", "Europe/Dublin"]
)
def test_naive_times_match_zoneinfo_around_every_offset_change(zone):
    """The per-day offset shortcut against zoneinfo itself over two years: three times on every day, every
    10 minutes around each change (Lord Howe moves 30 minutes, Havana and Santiago change at midnight,
    Dublin has negative DST)."""
    enc = RowEncoder(PRODUCTS, "YYYY-MM-DD HH:MM:SS", source_zone=ZoneInfo(zone))
    tz = ZoneInfo(zone)
    moments, changes = [], 0
    for day in (datetime(2024, 1, 1) + timedelta(days=n) for n in range(731)):
        if (day + timedelta(hours=36)).replace(tzinfo=tz).utcoffset() != day.replace(tzinfo=tz).utcoffset():
            changes += 1
            moments += [day + timedelta(minutes=10 * i) for i in range(6 * 72)]  # this day and the next two
        moments += [day, day + timedelta(hours=12), day + timedelta(hours=23, minutes=59, seconds=59)]
    unsure = 0
    for moment in moments:
        local = moment.replace(tzinfo=tz)
        unsure += local.utcoffset() != local.replace(fold=1).utcoffset()
        expected = local.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        assert encode(enc, product(updated_at=moment))["updated_at"] == expected, moment
    assert changes >= 3 and enc.ambiguous_times + enc.nonexistent_times == unsure > 0


def test_dropped_subseconds_are_counted(b2c):
    row = {"location_id": "L", "product_id": "P", "sold_at": datetime(2025, 1, 28, 14, 30, 0, 500_000, tzinfo=UTC)}
    assert encode(b2c, row)["sold_at"] == "2025-01-28T14:30:00Z"
    row["sold_at"] = "2025-01-28T14:30:00.25+00:00"
    assert encode(b2c, row)["sold_at"] == "2025-01-28T14:30:00Z"
    row["sold_at"] = datetime(2025, 1, 28, 14, 30)
    encode(b2c, row)
    assert b2c.truncated_subseconds == 2


def test_reasons_quote_a_bounded_part_of_the_value(inv):
    blob = bytes(range(256)) * 20_480  # 5 MB
    for value, words in (
        (blob, "expected a string, got bytes of 5,242,880 bytes: b'\\x00\\x01"),
        (bytearray(blob), "bytearray of 5,242,880 bytes: b'\\x00\\x01"),
        (memoryview(blob), "memoryview of 5,242,880 bytes: b'\\x00\\x01"),
        (memoryview(b"ab"), "got memoryview b'ab'"),
        (["x" * 1_000_000] * 3, "got list"),
        (10**5000, "too many digits"),
    ):
        out = encode(inv, product(product_name=value))
        assert isinstance(out, Rejection) and out.field == "product_name", words
        assert words in out.reason and len(out.reason) <= 300, out.reason
        assert "<memory at" not in out.reason
    out = encode(inv, product(updated_at="y" * 5_000_000))
    assert out.reason.startswith("products: cannot parse str of 5,000,000 characters: 'yyy") and len(out.reason) <= 300
    assert out.key == {"product_id": "P1", "updated_at": "y" * 199 + "…"}  # a bounded key too


class Hostile:
    """A value whose every text form fails."""

    def __str__(self):
        raise RuntimeError("no str")

    def __repr__(self):
        raise RuntimeError("no repr")


class BrokenText(str):
    """A str whose methods fail: what the last line of defence in encode() is for."""

    def strip(self, chars=None):
        raise KeyError("x" * 10_000)


def test_no_value_makes_encode_raise(inv):
    out = encode(inv, product(product_name=Hostile()))
    assert isinstance(out, Rejection) and out.field == "product_name" and "Hostile instance at" in out.reason
    out = encode(inv, product(updated_at=BrokenText("2025-01-01")))
    assert isinstance(out, Rejection) and out.field == "updated_at"
    assert "cannot convert the value: KeyError: 'xxx" in out.reason and len(out.reason) <= 300
    out = encode(inv, product(product_id=Hostile(), pack_size="x"))
    assert isinstance(out, Rejection) and out.key["product_id"].startswith("<Hostile instance at 0x")
    short = inv.encode(("P1", "S1"), inv.plan(["product_id", "source_id", "pack_size", "updated_at"], positional=True))
    assert isinstance(short, Rejection) and "IndexError" in short.reason
