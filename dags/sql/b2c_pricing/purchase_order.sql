-- purchase_order: one row per Peak record; the operator adds the incremental filter on updated_at.
SELECT
    order_number,
    product_id,
    location_id,
    order_due_date_at,
    ordered_at,
    ordered_units,
    purchase_order_id,
    status,
    delivered_units,
    receipted_units,
    receipt_date,
    actual_departure_at,
    expected_departure_at,
    created_at,
    updated_at
FROM purchase_order
