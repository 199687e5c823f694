-- Silver retail sales: completed purchases with a positive amount from 2023 on, each with its customer's
-- registration date (the latest version of the customer). Rows breaking a rule are tagged in _rejected_reason
-- and go to silver.retail_sales_quarantine, so bronze.retail_transactions = retail_sales + its quarantine.
WITH customers AS (
    SELECT customer_id, registration_date
    FROM (
        SELECT
            CAST(customer_id AS BIGINT) AS customer_id,
            CAST(registration_date AS DATE) AS registration_date,
            -- The customer database keeps stale versions of some customers: the latest update wins.
            ROW_NUMBER() OVER (
                PARTITION BY CAST(customer_id AS BIGINT)
                ORDER BY CAST(updated_at AS TIMESTAMP) DESC NULLS LAST, CAST(created_at AS TIMESTAMP) DESC NULLS LAST,
                    registration_date
            ) AS version_rank
        FROM iceberg.bronze.retail_customers
    ) AS versions
    WHERE version_rank = 1
),

typed AS (
    SELECT
        CAST(transaction_id AS BIGINT) AS transaction_id,
        CAST(customer_id AS BIGINT) AS customer_id,
        CAST(amount AS DECIMAL(10, 2)) AS amount,
        CAST(transaction_date AS DATE) AS transaction_date,
        LOWER(TRIM(status)) AS status,
        CAST(CAST(created_at AS TIMESTAMP) AS TIMESTAMP_NTZ) AS created_at
    FROM iceberg.bronze.retail_transactions
),

events AS (
    SELECT
        *,
        -- Replayed events repeat a transaction_id: the latest one is kept.
        ROW_NUMBER() OVER (
            PARTITION BY transaction_id
            ORDER BY created_at DESC NULLS LAST, status, amount DESC NULLS LAST, customer_id
        ) AS event_rank
    FROM typed
)

SELECT
    e.transaction_id,
    e.customer_id,
    e.amount,
    e.transaction_date,
    e.created_at,
    c.registration_date,
    CASE
        WHEN e.transaction_id IS NULL THEN 'null_transaction_id'
        WHEN e.customer_id IS NULL THEN 'null_customer_id'
        WHEN e.amount IS NULL OR e.amount <= 0 THEN 'non_positive_amount'
        WHEN e.transaction_date IS NULL THEN 'invalid_transaction_date'
        WHEN e.transaction_date < DATE'2023-01-01' THEN 'before_2023'
        WHEN e.status IS NULL OR e.status <> 'completed' THEN 'status_not_completed'
        WHEN e.event_rank > 1 THEN 'duplicate'
        WHEN c.customer_id IS NULL THEN 'unknown_customer'
    END AS _rejected_reason
FROM events AS e
LEFT JOIN customers AS c ON c.customer_id = e.customer_id
