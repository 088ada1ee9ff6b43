-- User activity (request-level Type-II features, DIG Table 1) for every user whose stats
-- changed on a day of [first_day, last_day]: counts per event type and window, active days,
-- average purchase price and the times of the last events (recency is derived from them at
-- request time by features/store.py, so it is exact for any request time).
{% from "_macros.sql" import window_sum, count_if with context -%}
WITH windowed AS (
    SELECT
        k.user_id,
        k.d,
{%- for w in windows %}
        {{ window_sum("exposures", w) }} AS exposures_{{ w }}d,
        {{ window_sum("clicks", w) }} AS clicks_{{ w }}d,
        {{ window_sum("carts", w) }} AS carts_{{ w }}d,
        {{ window_sum("purchases", w) }} AS purchases_{{ w }}d,
{%- endfor %}
        count(x.day) AS active_days,
        sum(x.gmv) AS purchase_value,
        sum(x.priced_purchases) AS priced_purchases,
        max(x.last_event_ts) AS last_event_ts,
        max(x.last_interaction_ts) AS last_interaction_ts,
        max(x.last_purchase_ts) AS last_purchase_ts
    FROM fe_changed_{{ name }} AS k
    LEFT JOIN fe_daily_{{ name }} AS x
        ON x.user_id = k.user_id AND x.day > k.d - {{ max_window }} AND x.day <= k.d
    GROUP BY k.user_id, k.d
)
SELECT
    s.user_id,
    c.event_timestamp,
    s.d,
{%- for w in windows %}
    {{ count_if("has_exposure", "s.exposures_%dd" % w) }} AS user_exposures_{{ w }}d,
    {{ count_if("has_click", "s.clicks_%dd" % w) }} AS user_clicks_{{ w }}d,
    {{ count_if("has_cart", "s.carts_%dd" % w) }} AS user_carts_{{ w }}d,
    {{ count_if("has_purchase", "s.purchases_%dd" % w) }} AS user_purchases_{{ w }}d,
{%- endfor %}
    CAST(s.active_days AS BIGINT) AS user_active_days_{{ max_window }}d,
    CASE WHEN c.has_purchase THEN s.purchase_value / nullif(s.priced_purchases, 0) END
        AS user_avg_purchase_price_{{ max_window }}d,
    s.last_event_ts AS user_last_event_ts,
    s.last_interaction_ts AS user_last_interaction_ts,
    s.last_purchase_ts AS user_last_purchase_ts
FROM windowed AS s
JOIN fe_day_context AS c ON c.d = s.d
