-- u2i cross stats (DIG §3.1: c_{u,v}, the user's history with the candidate; DIG's Taobao set:
-- per-category/brand CTR, impression and purchase counts) of a user with one item attribute
-- ({{ attribute }}); a candidate item is looked up through its own {{ attribute }}.
-- One row per (user, {{ attribute }}) whose stats changed on a day of [first_day, last_day].
{% from "_macros.sql" import window_sum, count_if, smoothed with context -%}
WITH windowed AS (
    SELECT
        k.user_id,
        k.{{ attribute }},
        k.d,
{%- for w in windows %}
        {{ window_sum("exposures", w) }} AS exposures_{{ w }}d,
        {{ window_sum("clicks", w) }} AS clicks_{{ w }}d,
        {{ window_sum("purchases", w) }} AS purchases_{{ w }}d{{ "," if not loop.last }}
{%- endfor %}
    FROM fe_changed_{{ name }} AS k
    LEFT JOIN fe_daily_{{ name }} AS x
        ON x.user_id = k.user_id AND x.{{ attribute }} = k.{{ attribute }}
        AND x.day > k.d - {{ max_window }} AND x.day <= k.d
    GROUP BY k.user_id, k.{{ attribute }}, k.d
)
SELECT
    s.user_id,
    s.{{ attribute }},
    c.event_timestamp,
    s.d,
{%- for w in windows %}
    {{ count_if("has_exposure", "s.exposures_%dd" % w) }} AS {{ prefix }}_exposures_{{ w }}d,
    {{ count_if("has_click", "s.clicks_%dd" % w) }} AS {{ prefix }}_clicks_{{ w }}d,
    {{ count_if("has_purchase", "s.purchases_%dd" % w) }} AS {{ prefix }}_purchases_{{ w }}d,
    {{ smoothed("has_exposure", "has_click", "s.clicks_%dd" % w, "s.exposures_%dd" % w,
                "ctr_prior_%dd" % w, m) }} AS {{ prefix }}_ctr_{{ w }}d,
    {{ smoothed("has_click", "has_purchase", "s.purchases_%dd" % w, "s.clicks_%dd" % w,
                "cvr_prior_%dd" % w, m) }} AS {{ prefix }}_cvr_{{ w }}d{{ "," if not loop.last }}
{%- endfor %}
FROM windowed AS s
JOIN fe_day_context AS c ON c.d = s.d
