-- location: one row per Peak record; the operator adds the incremental filter on updated_at.
SELECT
    location_id,
    country,
    currency,
    name,
    region,
    created_at,
    updated_at
FROM b2c_location
