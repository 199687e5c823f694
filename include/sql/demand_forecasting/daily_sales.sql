-- Silver daily sales: one row per store, SKU and day, typed and deduplicated. Rows breaking a rule are tagged in
-- _rejected_reason and go to silver.daily_sales_quarantine, so bronze.daily_sales = silver.daily_sales + its
-- quarantine. The store register (bronze.stores) tells known stores from unknown ones.
WITH stores AS (
    SELECT CAST(store_id AS BIGINT) AS store_id FROM iceberg.bronze.stores
),

typed AS (
    SELECT
        CAST(s.store_id AS BIGINT) AS store_id,
        CAST(s.sku_id AS BIGINT) AS sku_id,
        LOWER(TRIM(s.category)) AS category,
        TRY_CAST(s.sale_date AS DATE) AS sale_date,
        CAST(s.units AS BIGINT) AS units,
        CAST(s.on_promotion AS INT) AS on_promotion,
        k.store_id AS known_store_id
    FROM iceberg.bronze.daily_sales AS s
    LEFT JOIN stores AS k ON k.store_id = CAST(s.store_id AS BIGINT)
),

flagged AS (
    SELECT
        store_id,
        sku_id,
        category,
        sale_date,
        units,
        on_promotion,
        CASE
            WHEN known_store_id IS NULL THEN 'unknown_store'
            WHEN units IS NULL OR units < 0 THEN 'negative_units'
            -- A re-delivered row repeats (store, SKU, day): the first delivery is kept.
            WHEN ROW_NUMBER() OVER (
                PARTITION BY store_id, sku_id, sale_date, units IS NULL OR units < 0 ORDER BY units
            ) > 1 THEN 'duplicate'
        END AS _rejected_reason
    FROM typed
)

SELECT * FROM flagged
