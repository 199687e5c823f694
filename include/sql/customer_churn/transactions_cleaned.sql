-- Silver transactions: completed purchases with a customer, a positive amount and a date from 2023 on.
-- Rows breaking a rule are tagged in _rejected_reason (and go to the quarantine table) instead of being dropped,
-- so bronze.transactions = silver.transactions_cleaned + silver.transactions_cleaned_quarantine.
WITH typed AS (
    SELECT
        CAST(transaction_id AS BIGINT) AS transaction_id,
        CAST(customer_id AS BIGINT) AS customer_id,
        order_id,
        CAST(amount AS DECIMAL(10, 2)) AS amount,
        CAST(transaction_date AS DATE) AS transaction_date,
        LOWER(TRIM(payment_method)) AS payment_method,
        LOWER(TRIM(status)) AS status,
        -- Timestamps are stored without time zone, as UTC wall-clock time (the session time zone is UTC).
        CAST(CAST(created_at AS TIMESTAMP) AS TIMESTAMP_NTZ) AS created_at
    FROM iceberg.bronze.transactions
),

events AS (
    SELECT
        *,
        -- Replayed events repeat a transaction_id: the latest one is kept.
        ROW_NUMBER() OVER (
            PARTITION BY transaction_id
            ORDER BY created_at DESC NULLS LAST, status, amount DESC NULLS LAST, customer_id, order_id
        ) AS event_rank
    FROM typed
)

SELECT
    transaction_id,
    customer_id,
    order_id,
    amount,
    transaction_date,
    payment_method,
    status,
    created_at,
    CAST(current_timestamp() AS TIMESTAMP_NTZ) AS processed_at,
    CASE
        WHEN transaction_id IS NULL THEN 'null_transaction_id'
        WHEN customer_id IS NULL THEN 'null_customer_id'
        WHEN amount IS NULL THEN 'invalid_amount'
        WHEN amount <= 0 THEN 'non_positive_amount'
        WHEN transaction_date IS NULL THEN 'invalid_transaction_date'
        WHEN transaction_date < DATE'2023-01-01' THEN 'before_2023'
        WHEN status IS NULL OR status <> 'completed' THEN 'status_not_completed'
        WHEN event_rank > 1 THEN 'duplicate'
    END AS _rejected_reason
FROM events
