-- customer_orders: one row per Peak record; the operator adds the incremental filter on updated_at.
SELECT
    order_id,
    order_line_id,
    order_date,
    requested_ship_date,
    expected_ship_date,
    actual_ship_date,
    product_id,
    location_id,
    ordered_units,
    ordered_value,
    updated_at,
    status,
    shipped_units,
    shipped_value
FROM customer_orders
