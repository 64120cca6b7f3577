-- locations: one row per Peak record; the operator adds the incremental filter on updated_at.
SELECT
    location_id,
    location_name,
    country,
    is_store,
    is_dc,
    is_factory,
    updated_at
FROM locations
