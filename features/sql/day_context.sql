-- One row per output day d: the row timestamp, which event types the source has produced up
-- to d, and the global rates over each window that serve as prior means.
--
-- Bayesian prior of every smoothed rate (features/sql/*_stats.sql): a Beta prior whose mean is
-- the global rate of the same window and whose strength is m = features.prior_strength
-- pseudo-observations, i.e. Beta(m*p, m*(1-p)); the feature is the posterior mean
--     CTR = (clicks + m*p) / (exposures + m)        p = global clicks / exposures
--     CVR = (purchases + m*q) / (clicks + m)        q = global purchases / clicks
-- so a key with no traffic gets the global rate and a busy key its own rate.
-- A source without exposures (Amazon reviews) has no CTR: p is NULL and so is every CTR.
CREATE OR REPLACE TEMP TABLE fe_day_context AS
WITH days AS (
    SELECT CAST(unnest(range(CAST($first_day AS TIMESTAMP),
                             CAST($last_day AS TIMESTAMP) + INTERVAL 1 DAY,
                             INTERVAL 1 DAY)) AS DATE) AS d
),
first_seen AS (  -- first day of each event type in the whole warehouse (up to last_day)
    SELECT
        min(day) FILTER (WHERE event_type = 'exposure') AS exposure,
        min(day) FILTER (WHERE event_type = 'click') AS click,
        min(day) FILTER (WHERE event_type = 'cart') AS cart,
        min(day) FILTER (WHERE event_type = 'purchase') AS purchase
    FROM events
    WHERE day <= CAST($last_day AS DATE)
),
totals AS (
    SELECT
        day,
        count(*) FILTER (WHERE event_type = 'exposure') AS exposures,
        count(*) FILTER (WHERE event_type = 'click') AS clicks,
        count(*) FILTER (WHERE event_type = 'purchase') AS purchases
    FROM fe_events
    GROUP BY day
)
SELECT
    days.d,
    -- end of day d = midnight UTC that starts d+1 (the session runs with TimeZone = 'UTC')
    CAST(days.d + 1 AS TIMESTAMPTZ) AS event_timestamp,
    coalesce(any_value(f.exposure) <= days.d, false) AS has_exposure,
    coalesce(any_value(f.click) <= days.d, false) AS has_click,
    coalesce(any_value(f.cart) <= days.d, false) AS has_cart,
    coalesce(any_value(f.purchase) <= days.d, false) AS has_purchase,
{%- for w in windows %}
    CAST(sum(t.clicks) FILTER (WHERE t.day > days.d - {{ w }}) AS DOUBLE)
        / nullif(sum(t.exposures) FILTER (WHERE t.day > days.d - {{ w }}), 0) AS ctr_prior_{{ w }}d,
    CAST(sum(t.purchases) FILTER (WHERE t.day > days.d - {{ w }}) AS DOUBLE)
        / nullif(sum(t.clicks) FILTER (WHERE t.day > days.d - {{ w }}), 0) AS cvr_prior_{{ w }}d
    {{- "," if not loop.last }}
{%- endfor %}
FROM days
CROSS JOIN first_seen AS f
LEFT JOIN totals AS t ON t.day > days.d - {{ max_window }} AND t.day <= days.d
GROUP BY days.d;
