import json
from pathlib import Path

import pytest

from peak_provider.resources import (
    APPLICATIONS,
    FIELD_TYPES,
    OPERATIONS,
    CatalogueError,
    get_application,
    load_order,
)

SEEDS = json.loads((Path(__file__).parent / "fixtures" / "seed_examples.json").read_text())


@pytest.mark.parametrize("app", APPLICATIONS)
def test_catalogue_is_well_formed(app):
    application = get_application(app)
    assert application.resources
    for res in application.resources.values():
        names = [f.name for f in res.fields]
        assert len(names) == len(set(names)), res.name
        assert res.primary_key, res.name
        assert set(res.primary_key) <= set(names), res.name
        assert {f.type for f in res.fields} <= set(FIELD_TYPES), res.name
        assert res.default_operation in OPERATIONS
        for fk in res.foreign_keys:
            assert fk.field in names, (res.name, fk)


@pytest.mark.parametrize("key", sorted(SEEDS))
def test_seed_resources_match_their_seed_page(key):
    """The seed's example row has exactly the resource's fields, all required ones among them."""
    app, name = key.split(".")
    res = get_application(app).resource(name)
    example = SEEDS[key]["body"]["data"][0]
    assert {f.name for f in res.fields} == set(example)
    assert res.provenance == "seed"


def test_seed_primary_keys_and_required_flags():
    inv, b2c = get_application("inventory"), get_application("b2c_pricing")
    assert inv.resource("products").primary_key == ("product_id", "updated_at")
    assert inv.resource("customer_orders").primary_key == ("order_id", "order_line_id", "updated_at")
    assert inv.resource("manufacturing_orders").primary_key == (
        "product_id",
        "location_id",
        "order_number",
        "updated_at",
    )
    assert b2c.resource("purchase_order").primary_key == ("order_number", "product_id")
    assert b2c.resource("sale").primary_key == ("location_id", "product_id", "sold_at")
    products = inv.resource("products")
    assert [f.name for f in products.fields if f.required] == ["product_id", "source_id", "pack_size", "updated_at"]
    assert products.field("pack_size").type == "integer"
    sale = b2c.resource("sale")
    assert [f.name for f in sale.fields if f.required] == ["location_id", "product_id", "sold_at"]
    assert sale.field("demand_units").type == "float"
    assert b2c.resource("purchase_order").field("receipt_date").type == "date"


def test_timestamp_format_per_application():
    assert get_application("inventory").timestamp_format == "YYYY-MM-DD HH:MM:SS"
    assert get_application("b2c_pricing").timestamp_format == "YYYY-MM-DDTHH:MM:SSZ"


def test_b2b_pricing_recommends_append_for_history_tables():
    b2b = get_application("b2b_pricing")
    assert b2b.resource("product").default_operation == "APPEND"
    assert b2b.resource("quote_line").default_operation == "UPSERT"


def test_unknown_resource_lists_known_ones():
    with pytest.raises(CatalogueError, match=r"Unknown resource 'prodcts'.*customer_orders.*products"):
        get_application("inventory").resource("prodcts")


def test_unknown_application():
    with pytest.raises(CatalogueError, match="inventory, b2c_pricing"):
        get_application("nope")


def test_load_order_puts_referenced_resources_first():
    order = load_order("inventory", ["customer_orders", "manufacturing_orders", "products", "locations"])
    assert order.index("products") < order.index("customer_orders")
    assert order.index("locations") < order.index("manufacturing_orders")
    b2c = load_order("b2c_pricing", ["sale", "purchase_order", "location", "product"])
    assert b2c[:2] == ["location", "product"]
    assert set(b2c[2:]) == {"sale", "purchase_order"}


def test_load_order_ignores_self_references_and_absent_targets():
    # product_category references itself (parent category); product references product_category
    assert load_order("b2c_pricing", ["product", "product_category"]) == ["product_category", "product"]
    assert load_order("inventory", ["manufacturing_orders"]) == ["manufacturing_orders"]


def test_load_order_detects_cycles(monkeypatch):
    from dataclasses import replace

    from peak_provider.resources import ForeignKey

    app = get_application("inventory")
    products = replace(app.resource("products"), foreign_keys=(ForeignKey("product_id", "customer_orders"),))
    cyclic = replace(app, resources={**app.resources, "products": products})
    with pytest.raises(CatalogueError, match="cycle"):
        load_order(cyclic, ["products", "customer_orders"])
