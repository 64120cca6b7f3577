-- sale: one row per Peak record; the operator adds the incremental filter on updated_at.
SELECT
    location_id,
    product_id,
    sold_at,
    customer_id,
    sale_id,
    demand_units,
    demand_value,
    return_units,
    return_value,
    sales_units,
    sales_value,
    created_at,
    updated_at,
    returned_at,
    shipped_at
FROM sale
