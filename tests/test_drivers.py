"""``drivers``: how a datetime bound reaches each driver, and the zone it is written in for SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from peak_provider.connection import parse_zone
from peak_provider.drivers import bound_value

MOMENT = datetime(2025, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))  # 10:00 UTC


@pytest.mark.parametrize(("zone", "text"), [("UTC", "2025-07-01 10:00:00"), ("Europe/London", "2025-07-01 11:00:00")])
def test_sqlite_gets_text_in_the_warehouse_zone(zone, text):
    assert bound_value(MOMENT, "sqlite3", parse_zone(zone)) == text


def test_other_drivers_get_an_aware_utc_datetime_whatever_the_zone():
    bound = bound_value(MOMENT, "psycopg", parse_zone("Asia/Tokyo"))
    assert bound == MOMENT and bound.tzinfo is UTC


def test_the_utc_zone_is_datetime_utc():
    assert parse_zone("UTC") is UTC  # the encoder's fast path looks for exactly this object
