-- manufacturing_orders: one row per Peak record; the operator adds the incremental filter on updated_at.
SELECT
    order_number,
    product_id,
    location_id,
    source_id,
    ordered_at,
    ordered_units,
    expected_start_date,
    actual_start_date,
    expected_end_date,
    actual_end_date,
    produced_units,
    status,
    updated_at
FROM manufacturing_orders
