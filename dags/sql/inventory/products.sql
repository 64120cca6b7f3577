-- products: one row per Peak record; the operator adds the incremental filter on updated_at.
SELECT
    product_id,
    product_name,
    product_description,
    product_category,
    source_id,
    pack_size,
    minimum_order_quantity,
    product_image_urls,
    updated_at
FROM products
