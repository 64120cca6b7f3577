-- product: one row per Peak record; the operator adds the incremental filter on updated_at.
SELECT
    product_id,
    name,
    description,
    lowest_product_category_id,
    created_at,
    updated_at
FROM b2c_product
