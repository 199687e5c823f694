-- Silver card transactions: typed, deduplicated, enriched with the card's home country and issue date, the
-- chargeback reported for the transaction (if any) and rolling windows over the card's own history (velocity,
-- the card's 30-day mean amount, first use of a merchant or country). Windows only see earlier valid rows of the
-- same card. Rows breaking a rule are tagged in _rejected_reason and go to silver.card_transactions_quarantine,
-- so bronze.card_transactions = silver.card_transactions + its quarantine.
WITH cards AS (
    SELECT
        CAST(card_id AS BIGINT) AS card_id,
        UPPER(TRIM(home_country)) AS home_country,
        TRY_CAST(issued_date AS DATE) AS card_issued_date
    FROM iceberg.bronze.cards
),

chargebacks AS (
    SELECT
        CAST(transaction_id AS BIGINT) AS transaction_id,
        MIN(CAST(TRY_CAST(reported_at AS TIMESTAMP) AS TIMESTAMP_NTZ)) AS chargeback_reported_at
    FROM iceberg.bronze.chargebacks
    GROUP BY CAST(transaction_id AS BIGINT)
),

typed AS (
    SELECT
        CAST(transaction_id AS BIGINT) AS transaction_id,
        CAST(card_id AS BIGINT) AS card_id,
        CAST(merchant_id AS BIGINT) AS merchant_id,
        LOWER(TRIM(merchant_category)) AS merchant_category,
        UPPER(TRIM(country)) AS country,
        CAST(amount AS DOUBLE) AS amount,
        -- Timestamps are UTC wall-clock time (the session time zone is UTC); unparseable text becomes NULL.
        UNIX_SECONDS(TRY_CAST(transaction_ts AS TIMESTAMP)) AS event_seconds,
        CAST(TRY_CAST(transaction_ts AS TIMESTAMP) AS TIMESTAMP_NTZ) AS transaction_ts,
        CAST(TRY_CAST(created_at AS TIMESTAMP) AS TIMESTAMP_NTZ) AS created_at
    FROM iceberg.bronze.card_transactions
),

events AS (
    SELECT
        t.*,
        c.home_country,
        c.card_issued_date,
        c.card_id AS known_card_id,
        -- Replayed events repeat a transaction_id: the latest delivery is kept.
        ROW_NUMBER() OVER (
            PARTITION BY t.transaction_id
            ORDER BY t.created_at DESC NULLS LAST, t.amount DESC NULLS LAST, t.card_id, t.merchant_id
        ) AS event_rank
    FROM typed AS t
    LEFT JOIN cards AS c ON c.card_id = t.card_id
),

flagged AS (
    SELECT
        *,
        CASE
            WHEN transaction_id IS NULL THEN 'null_transaction_id'
            WHEN card_id IS NULL THEN 'null_card_id'
            WHEN known_card_id IS NULL THEN 'unknown_card'
            WHEN amount IS NULL OR amount <= 0 THEN 'non_positive_amount'
            WHEN transaction_ts IS NULL THEN 'invalid_timestamp'
            WHEN event_rank > 1 THEN 'duplicate'
        END AS _rejected_reason
    FROM events
),

windowed AS (
    SELECT
        f.transaction_id,
        f.card_id,
        f.merchant_id,
        f.merchant_category,
        f.country,
        f.home_country,
        f.card_issued_date,
        f.amount,
        f.transaction_ts,
        f.created_at,
        COUNT(*) OVER (
            PARTITION BY f.card_id ORDER BY f.event_seconds RANGE BETWEEN 3600 PRECEDING AND 1 PRECEDING
        ) AS txn_count_1h,
        COUNT(*) OVER (
            PARTITION BY f.card_id ORDER BY f.event_seconds RANGE BETWEEN 86400 PRECEDING AND 1 PRECEDING
        ) AS txn_count_24h,
        COALESCE(SUM(f.amount) OVER (
            PARTITION BY f.card_id ORDER BY f.event_seconds RANGE BETWEEN 86400 PRECEDING AND 1 PRECEDING
        ), 0.0) AS amount_sum_24h,
        COUNT(*) OVER (
            PARTITION BY f.card_id ORDER BY f.event_seconds RANGE BETWEEN 2592000 PRECEDING AND 1 PRECEDING
        ) AS txn_count_30d,
        AVG(f.amount) OVER (
            PARTITION BY f.card_id ORDER BY f.event_seconds RANGE BETWEEN 2592000 PRECEDING AND 1 PRECEDING
        ) AS amount_mean_30d,
        f.event_seconds - LAG(f.event_seconds) OVER (
            PARTITION BY f.card_id ORDER BY f.event_seconds, f.transaction_id
        ) AS seconds_since_previous,
        CAST(ROW_NUMBER() OVER (
            PARTITION BY f.card_id, f.merchant_id ORDER BY f.event_seconds, f.transaction_id
        ) = 1 AS INT) AS is_new_merchant,
        CAST(ROW_NUMBER() OVER (
            PARTITION BY f.card_id, f.country ORDER BY f.event_seconds, f.transaction_id
        ) = 1 AS INT) AS is_new_country,
        cb.chargeback_reported_at,
        CAST(NULL AS STRING) AS _rejected_reason
    FROM flagged AS f
    LEFT JOIN chargebacks AS cb ON cb.transaction_id = f.transaction_id
    WHERE f._rejected_reason IS NULL
)

SELECT * FROM windowed
UNION ALL
SELECT
    transaction_id,
    card_id,
    merchant_id,
    merchant_category,
    country,
    home_country,
    card_issued_date,
    amount,
    transaction_ts,
    created_at,
    CAST(NULL AS BIGINT) AS txn_count_1h,
    CAST(NULL AS BIGINT) AS txn_count_24h,
    CAST(NULL AS DOUBLE) AS amount_sum_24h,
    CAST(NULL AS BIGINT) AS txn_count_30d,
    CAST(NULL AS DOUBLE) AS amount_mean_30d,
    CAST(NULL AS BIGINT) AS seconds_since_previous,
    CAST(NULL AS INT) AS is_new_merchant,
    CAST(NULL AS INT) AS is_new_country,
    CAST(NULL AS TIMESTAMP_NTZ) AS chargeback_reported_at,
    _rejected_reason
FROM flagged
WHERE _rejected_reason IS NOT NULL
