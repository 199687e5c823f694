-- Silver promotions: the planned chain-wide promotions per SKU, typed. A promotion without dates, or ending
-- before it starts, goes to silver.promotions_quarantine.
SELECT
    CAST(promotion_id AS BIGINT) AS promotion_id,
    CAST(sku_id AS BIGINT) AS sku_id,
    TRY_CAST(start_date AS DATE) AS start_date,
    TRY_CAST(end_date AS DATE) AS end_date,
    CASE
        WHEN TRY_CAST(start_date AS DATE) IS NULL OR TRY_CAST(end_date AS DATE) IS NULL THEN 'invalid_date'
        WHEN TRY_CAST(end_date AS DATE) < TRY_CAST(start_date AS DATE) THEN 'ends_before_start'
    END AS _rejected_reason
FROM iceberg.bronze.promotions
