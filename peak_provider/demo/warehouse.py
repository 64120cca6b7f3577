"""Generate a realistic demo warehouse (SQLite): inventory and B2C tables, 30 days of activity.

Deterministic (seeded): about 1,000 products, 50 locations, 30 days of customer orders, manufacturing
orders, purchase orders and sales, some rows updated after they were created, and a handful of invalid
rows (all in the last three days, so the demo's runs meet them). Timestamps are UTC text
``YYYY-MM-DD HH:MM:SS``, the way SQLite warehouses usually hold them.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

#: The day after the last day of data; the demo runs the three daily intervals before it.
END = datetime(2025, 3, 3)
DAYS = 30
START = END - timedelta(days=DAYS)

#: Warehouse table -> (application, resource) of the Peak object its rows are loaded into (as in dags/sql/).
RESOURCE_OF: dict[str, tuple[str, str]] = {
    "products": ("inventory", "products"),
    "locations": ("inventory", "locations"),
    "customer_orders": ("inventory", "customer_orders"),
    "manufacturing_orders": ("inventory", "manufacturing_orders"),
    "b2c_product": ("b2c_pricing", "product"),
    "b2c_location": ("b2c_pricing", "location"),
    "purchase_order": ("b2c_pricing", "purchase_order"),
    "sale": ("b2c_pricing", "sale"),
}

TABLES: dict[str, list[str]] = {
    "products": [
        "product_id TEXT",
        "product_name TEXT",
        "product_description TEXT",
        "product_category TEXT",
        "source_id TEXT",
        "pack_size INTEGER",
        "minimum_order_quantity INTEGER",
        "product_image_urls TEXT",
        "updated_at TEXT",
    ],
    "locations": [
        "location_id TEXT",
        "location_name TEXT",
        "country TEXT",
        "is_store INTEGER",
        "is_dc INTEGER",
        "is_factory INTEGER",
        "updated_at TEXT",
    ],
    "customer_orders": [
        "order_id TEXT",
        "order_line_id TEXT",
        "order_date TEXT",
        "requested_ship_date TEXT",
        "expected_ship_date TEXT",
        "actual_ship_date TEXT",
        "product_id TEXT",
        "location_id TEXT",
        "ordered_units INTEGER",
        "ordered_value NUMERIC",
        "updated_at TEXT",
        "status TEXT",
        "shipped_units INTEGER",
        "shipped_value NUMERIC",
    ],
    "manufacturing_orders": [
        "order_number TEXT",
        "product_id TEXT",
        "location_id TEXT",
        "source_id TEXT",
        "ordered_at TEXT",
        "ordered_units INTEGER",
        "expected_start_date TEXT",
        "actual_start_date TEXT",
        "expected_end_date TEXT",
        "actual_end_date TEXT",
        "produced_units INTEGER",
        "status TEXT",
        "updated_at TEXT",
    ],
    "b2c_product": [
        "product_id TEXT",
        "name TEXT",
        "description TEXT",
        "lowest_product_category_id TEXT",
        "created_at TEXT",
        "updated_at TEXT",
    ],
    "b2c_location": [
        "location_id TEXT",
        "country TEXT",
        "currency TEXT",
        "name TEXT",
        "region TEXT",
        "created_at TEXT",
        "updated_at TEXT",
    ],
    "purchase_order": [
        "order_number TEXT",
        "product_id TEXT",
        "location_id TEXT",
        "order_due_date_at TEXT",
        "ordered_at TEXT",
        "ordered_units INTEGER",
        "purchase_order_id TEXT",
        "status TEXT",
        "delivered_units INTEGER",
        "receipted_units INTEGER",
        "receipt_date TEXT",
        "actual_departure_at TEXT",
        "expected_departure_at TEXT",
        "created_at TEXT",
        "updated_at TEXT",
    ],
    "sale": [
        "location_id TEXT",
        "product_id TEXT",
        "sold_at TEXT",
        "customer_id TEXT",
        "sale_id TEXT",
        "demand_units REAL",
        "demand_value NUMERIC",
        "return_units INTEGER",
        "return_value NUMERIC",
        "sales_units INTEGER",
        "sales_value NUMERIC",
        "created_at TEXT",
        "updated_at TEXT",
        "returned_at TEXT",
        "shipped_at TEXT",
    ],
}

CATEGORIES = ["Widgets", "Gadgets", "Hardware", "Apparel", "Grocery", "Garden", "Toys", "Electronics"]
ADJECTIVES = ["Blue", "Red", "Compact", "Deluxe", "Eco", "Heavy-duty", "Mini", "Premium", "Classic", "Smart"]
NOUNS = ["Widget", "Lamp", "Kettle", "Drill", "Backpack", "Jacket", "Headphones", "Planter", "Blender", "Puzzle"]
CITIES = [
    ("London", "United Kingdom", "GBP", "South East"),
    ("Manchester", "United Kingdom", "GBP", "North West"),
    ("Dublin", "Ireland", "EUR", "Leinster"),
    ("Paris", "France", "EUR", "Ile-de-France"),
    ("Berlin", "Germany", "EUR", "Berlin"),
    ("Madrid", "Spain", "EUR", "Madrid"),
    ("Milan", "Italy", "EUR", "Lombardy"),
    ("Amsterdam", "Netherlands", "EUR", "North Holland"),
]


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class _Generator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def moment(self, day: int) -> datetime:
        """A random time on day ``day`` (0 = START)."""
        return START + timedelta(days=day, seconds=self.rng.randrange(86_400))

    def later(self, moment: datetime, max_days: int = 3) -> datetime | None:
        """Sometimes a later update of a row created at ``moment`` (never past the data's end)."""
        if self.rng.random() < 0.3:
            candidate = moment + timedelta(seconds=self.rng.randrange(3600, max_days * 86_400))
            if candidate < END:
                return candidate
        return None

    def products(self, n: int) -> Iterable[tuple[Any, ...]]:
        for i in range(1, n + 1):
            name = f"{self.rng.choice(ADJECTIVES)} {self.rng.choice(NOUNS)} {i}"
            yield (
                f"PROD-{i:04d}",
                name,
                f"The {name.lower()}, {self.rng.choice(['boxed', 'loose', 'bundle'])}",
                self.rng.choice(CATEGORIES),
                f"SUP-{self.rng.randrange(1, 41):03d}",
                self.rng.choice([1, 6, 12, 24]),
                self.rng.choice([None, 12, 24, 48]),
                f"https://example.com/img/prod{i:04d}.jpg",
                ts(self.moment(self.rng.randrange(DAYS))),
            )

    def locations(self, n: int) -> Iterable[tuple[Any, ...]]:
        for i in range(1, n + 1):
            city, country, _, _ = CITIES[i % len(CITIES)]
            kind = "DC" if i % 10 == 0 else ("Factory" if i % 17 == 0 else "Store")
            yield (
                f"LOC-{i:03d}",
                f"{city} {kind} {i}",
                country,
                int(kind == "Store"),
                int(kind == "DC"),
                int(kind == "Factory"),
                ts(self.moment(self.rng.randrange(DAYS))),
            )

    def customer_orders(self, per_day: int) -> Iterable[tuple[Any, ...]]:
        n = 0
        for day in range(DAYS):
            for _ in range(per_day):
                n += 1
                placed = self.moment(day)
                units = self.rng.randrange(1, 40)
                price = round(self.rng.uniform(2, 80), 2)
                updated = self.later(placed) or placed
                shipped = updated != placed
                yield (
                    f"ORD-{n:06d}",
                    "LINE-001",
                    ts(placed),
                    ts(placed + timedelta(days=7)),
                    ts(placed + timedelta(days=7)),
                    ts(updated) if shipped else None,
                    f"PROD-{self.rng.randrange(1, 1001):04d}",
                    f"LOC-{self.rng.randrange(1, 51):03d}",
                    units,
                    round(units * price, 2),
                    ts(updated),
                    "shipped" if shipped else "open",
                    units if shipped else None,
                    round(units * price, 2) if shipped else None,
                )

    def manufacturing_orders(self, per_day: int) -> Iterable[tuple[Any, ...]]:
        n = 0
        for day in range(DAYS):
            for _ in range(per_day):
                n += 1
                ordered = self.moment(day)
                start = ordered + timedelta(days=2)
                updated = self.later(ordered) or ordered
                done = updated != ordered
                units = self.rng.randrange(100, 1000)
                yield (
                    f"MO-{n:05d}",
                    f"PROD-{self.rng.randrange(1, 1001):04d}",
                    "LOC-017",
                    f"LINE-{self.rng.randrange(1, 6):03d}",
                    ts(ordered),
                    units,
                    ts(start),
                    ts(start) if done else None,
                    ts(start + timedelta(days=2)),
                    ts(updated) if done else None,
                    units - self.rng.randrange(0, 5) if done else None,
                    "completed" if done else "scheduled",
                    ts(updated),
                )

    def b2c_products(self, products: list[tuple[Any, ...]]) -> Iterable[tuple[Any, ...]]:
        for p in products:
            yield (p[0], p[1], p[2], f"CAT-{p[3].upper()}", ts(START), p[8])

    def b2c_locations(self, n: int) -> Iterable[tuple[Any, ...]]:
        for i in range(1, n + 1):
            city, country, currency, region = CITIES[i % len(CITIES)]
            yield (
                f"LOC-{i:03d}",
                country,
                currency,
                f"{city} Store {i}",
                region,
                ts(START),
                ts(self.moment(self.rng.randrange(DAYS))),
            )

    def purchase_orders(self, per_day: int) -> Iterable[tuple[Any, ...]]:
        n = 0
        for day in range(DAYS):
            for _ in range(per_day):
                n += 1
                ordered = self.moment(day)
                updated = self.later(ordered) or ordered
                received = updated != ordered
                units = self.rng.randrange(50, 500)
                yield (
                    f"PO-{n:05d}",
                    f"PROD-{self.rng.randrange(1, 1001):04d}",
                    f"LOC-{self.rng.randrange(1, 51):03d}",
                    ts(ordered + timedelta(days=14)),
                    ts(ordered),
                    units,
                    f"PO-{n:05d}",
                    "Received" if received else "In Transit",
                    units if received else 0,
                    units if received else 0,
                    updated.date().isoformat() if received else None,
                    ts(ordered + timedelta(days=1)),
                    ts(ordered + timedelta(days=1)),
                    ts(ordered),
                    ts(updated),
                )

    def sales(self, per_day: int) -> Iterable[tuple[Any, ...]]:
        n = 0
        for day in range(DAYS):
            for _ in range(per_day):
                n += 1
                sold = self.moment(day)
                units = self.rng.randrange(1, 5)
                price = round(self.rng.uniform(5, 250), 2)
                updated = self.later(sold) or sold
                returned = updated != sold and self.rng.random() < 0.5
                yield (
                    f"LOC-{self.rng.randrange(1, 51):03d}",
                    f"PROD-{self.rng.randrange(1, 1001):04d}",
                    ts(sold),
                    f"CUST-{self.rng.randrange(1, 5000):05d}",
                    f"SALE-{n:06d}",
                    float(units),
                    round(units * price, 2),
                    1 if returned else 0,
                    price if returned else 0.0,
                    units - (1 if returned else 0),
                    round((units - (1 if returned else 0)) * price, 2),
                    ts(sold),
                    ts(updated),
                    ts(updated) if returned else None,
                    ts(sold + timedelta(hours=2)),
                )


# A handful of invalid rows, each dated in the demo's last three days: (table, assignments, where).
INVALID = [
    ("products", "pack_size = NULL", "product_id IN ('PROD-0007', 'PROD-0011')"),
    ("customer_orders", "ordered_units = 2.5", "order_id IN ('ORD-002301', 'ORD-002302')"),
    ("manufacturing_orders", "expected_start_date = NULL", "order_number = 'MO-00281'"),
    ("purchase_order", "ordered_units = 'twelve'", "order_number = 'PO-00581'"),
    ("sale", "sold_at = 'yesterday afternoon'", "sale_id IN ('SALE-005801', 'SALE-005802')"),
    # valid for the client, refused by the API (strings are capped at 65,535 characters): a server-side rejection
    ("b2c_product", "description = substr(hex(zeroblob(35000)), 1, 70000)", "product_id = 'PROD-0013'"),
]


def build(
    path: str | Path,
    *,
    seed: int = 42,
    products: int = 1000,
    locations: int = 50,
    orders_per_day: int = 80,
    manufacturing_per_day: int = 10,
    purchase_orders_per_day: int = 20,
    sales_per_day: int = 200,
) -> Path:
    """(Re)create the demo warehouse at ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    gen = _Generator(seed)
    product_rows = list(gen.products(products))
    data = {
        "products": product_rows,
        "locations": gen.locations(locations),
        "customer_orders": gen.customer_orders(orders_per_day),
        "manufacturing_orders": gen.manufacturing_orders(manufacturing_per_day),
        "b2c_product": gen.b2c_products(product_rows),
        "b2c_location": gen.b2c_locations(locations),
        "purchase_order": gen.purchase_orders(purchase_orders_per_day),
        "sale": gen.sales(sales_per_day),
    }
    with sqlite3.connect(path) as db:
        for table, columns in TABLES.items():
            db.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
            marks = ", ".join("?" * len(columns))
            db.executemany(f"INSERT INTO {table} VALUES ({marks})", data[table])
            db.execute(f"CREATE INDEX {table}_updated_at ON {table} (updated_at)")
        for table, assignments, where in INVALID:
            db.execute(
                f"UPDATE {table} SET {assignments}, updated_at = ? WHERE {where}", (ts(END - timedelta(hours=5)),)
            )
    return path


if __name__ == "__main__":
    import sys

    print(build(sys.argv[1] if len(sys.argv) > 1 else "warehouse.db"))
