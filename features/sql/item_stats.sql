-- Item exposure stats for every item whose stats changed on a day of [first_day, last_day]
-- (changed_keys.sql): exposures, clicks, carts, purchases, GMV and smoothed CTR/CVR per window.
-- They are the ranker's item features and the SID builder's exposure weights (UniRec §3.2).
{% from "_macros.sql" import window_sum, count_if, smoothed with context -%}
WITH windowed AS (
    SELECT
        k.item_id,
        k.d,
{%- for w in windows %}
        {{ window_sum("exposures", w) }} AS exposures_{{ w }}d,
        {{ window_sum("clicks", w) }} AS clicks_{{ w }}d,
        {{ window_sum("carts", w) }} AS carts_{{ w }}d,
        {{ window_sum("purchases", w) }} AS purchases_{{ w }}d,
        {{ window_sum("gmv", w) }} AS gmv_{{ w }}d{{ "," if not loop.last }}
{%- endfor %}
    FROM fe_changed_{{ name }} AS k
    LEFT JOIN fe_daily_{{ name }} AS x
        ON x.item_id = k.item_id AND x.day > k.d - {{ max_window }} AND x.day <= k.d
    GROUP BY k.item_id, k.d
)
SELECT
    s.item_id,
    c.event_timestamp,
    s.d,
{%- for w in windows %}
    {{ count_if("has_exposure", "s.exposures_%dd" % w) }} AS item_exposures_{{ w }}d,
    {{ count_if("has_click", "s.clicks_%dd" % w) }} AS item_clicks_{{ w }}d,
    {{ count_if("has_cart", "s.carts_%dd" % w) }} AS item_carts_{{ w }}d,
    {{ count_if("has_purchase", "s.purchases_%dd" % w) }} AS item_purchases_{{ w }}d,
    CASE WHEN c.has_purchase THEN coalesce(s.gmv_{{ w }}d, 0) END AS item_gmv_{{ w }}d,
    {{ smoothed("has_exposure", "has_click", "s.clicks_%dd" % w, "s.exposures_%dd" % w,
                "ctr_prior_%dd" % w, m) }} AS item_ctr_{{ w }}d,
    {{ smoothed("has_click", "has_purchase", "s.purchases_%dd" % w, "s.clicks_%dd" % w,
                "cvr_prior_%dd" % w, m) }} AS item_cvr_{{ w }}d{{ "," if not loop.last }}
{%- endfor %}
FROM windowed AS s
JOIN fe_day_context AS c ON c.d = s.d
