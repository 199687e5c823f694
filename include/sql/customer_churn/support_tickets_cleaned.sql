-- Silver support tickets: one row per ticket with a customer; open tickets keep a NULL resolution time.
-- Rows breaking a rule are tagged in _rejected_reason (and go to the quarantine table) instead of being dropped,
-- so bronze.support_tickets = silver.support_tickets_cleaned + silver.support_tickets_cleaned_quarantine.
WITH typed AS (
    SELECT
        CAST(ticket_id AS BIGINT) AS ticket_id,
        CAST(customer_id AS BIGINT) AS customer_id,
        -- Timestamps are stored without time zone, as UTC wall-clock time (the session time zone is UTC).
        CAST(CAST(created_at AS TIMESTAMP) AS TIMESTAMP_NTZ) AS created_at,
        CAST(resolution_time_hours AS DOUBLE) AS resolution_time_hours,
        CAST(satisfaction_score AS INT) AS satisfaction_score
    FROM iceberg.bronze.support_tickets
),

events AS (
    SELECT
        *,
        -- The support API returns some tickets twice: the latest copy is kept.
        ROW_NUMBER() OVER (
            PARTITION BY ticket_id
            ORDER BY created_at DESC NULLS LAST, resolution_time_hours DESC NULLS LAST, satisfaction_score, customer_id
        ) AS event_rank
    FROM typed
)

SELECT
    ticket_id,
    customer_id,
    created_at,
    resolution_time_hours,
    satisfaction_score,
    CAST(current_timestamp() AS TIMESTAMP_NTZ) AS processed_at,
    CASE
        WHEN ticket_id IS NULL THEN 'null_ticket_id'
        WHEN customer_id IS NULL THEN 'null_customer_id'
        WHEN created_at IS NULL THEN 'invalid_created_at'
        WHEN resolution_time_hours < 0 THEN 'negative_resolution_time'
        WHEN event_rank > 1 THEN 'duplicate'
    END AS _rejected_reason
FROM events
