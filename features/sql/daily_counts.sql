-- Per key and day: event counts by type, purchase value and (for users) the last event times.
-- Keys with a NULL part (an item without brand or seller) have no cross features.
CREATE OR REPLACE TEMP TABLE fe_daily_{{ name }} AS
SELECT
    {{ keys | join(", ") }},
    day,
    -- INTEGER, so window sums are BIGINT rather than the much slower HUGEINT
    CAST(count(*) FILTER (WHERE event_type = 'exposure') AS INTEGER) AS exposures,
    CAST(count(*) FILTER (WHERE event_type = 'click') AS INTEGER) AS clicks,
    CAST(count(*) FILTER (WHERE event_type = 'cart') AS INTEGER) AS carts,
    CAST(count(*) FILTER (WHERE event_type = 'purchase') AS INTEGER) AS purchases,
    coalesce(sum(price) FILTER (WHERE event_type = 'purchase'), 0) AS gmv,
    CAST(count(price) FILTER (WHERE event_type = 'purchase') AS INTEGER) AS priced_purchases
{%- if recency %},
    -- whole seconds: Feast keeps UnixTimestamp features at second precision online
    date_trunc('second', max(ts)) AS last_event_ts,
    date_trunc('second', max(ts) FILTER (WHERE event_type <> 'exposure')) AS last_interaction_ts,
    date_trunc('second', max(ts) FILTER (WHERE event_type = 'purchase')) AS last_purchase_ts
{%- endif %}
FROM fe_events
WHERE {% for k in keys %}{{ k }} IS NOT NULL{{ " AND " if not loop.last }}{% endfor %}
GROUP BY {{ keys | join(", ") }}, day;
