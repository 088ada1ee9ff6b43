-- u2i cross stats (DIG §3.1: c_{u,v}, the user's history with the candidate; DIG's Taobao set:
-- per-category/brand CTR, impression and purchase counts) of a user with one item attribute
-- ({{ attribute }}); a candidate item is looked up through its own {{ attribute }}.
-- One row per (user, {{ attribute }}) whose stats changed on a day of [first_day, last_day].
--
-- The windowed sums are the costliest step of the feature tables. When `pack_bits` is set
-- (compute.py checks that every window sum fits in that many bits), a day's exposures, clicks
-- and purchases travel as one BIGINT, `packed`, so each window needs one sum instead of three;
-- the fields are split again afterwards. Both forms give the same rows.
{% from "_macros.sql" import window_sum, count_if, smoothed with context -%}
{%- set measures = ["exposures", "clicks", "purchases"] -%}
WITH daily AS (
    SELECT
        *{% if pack_bits %},
        (CAST(exposures AS BIGINT) << {{ 2 * pack_bits }}) + (CAST(clicks AS BIGINT) << {{ pack_bits }})
            + purchases AS packed{% endif %}
    FROM fe_daily_{{ name }}
),
windowed AS (
    SELECT
        k.user_id,
        k.{{ attribute }},
        k.d,
{%- for w in windows %}
{%- set last_window = loop.last %}
{%- if pack_bits %}
        CAST({{ window_sum("packed", w) }} AS BIGINT) AS packed_{{ w }}d{{ "," if not last_window }}
{%- else %}
{%- for measure in measures %}
        {{ window_sum(measure, w) }} AS {{ measure }}_{{ w }}d{{ "," if not (last_window and loop.last) }}
{%- endfor %}
{%- endif %}
{%- endfor %}
    FROM fe_changed_{{ name }} AS k
    LEFT JOIN daily AS x
        ON x.user_id = k.user_id AND x.{{ attribute }} = k.{{ attribute }}
        AND x.day > k.d - {{ max_window }} AND x.day <= k.d
    GROUP BY k.user_id, k.{{ attribute }}, k.d
){% if pack_bits %},
unpacked AS (
    SELECT
        user_id,
        {{ attribute }},
        d,
{%- for w in windows %}
        packed_{{ w }}d >> {{ 2 * pack_bits }} AS exposures_{{ w }}d,
        (packed_{{ w }}d >> {{ pack_bits }}) & {{ 2 ** pack_bits - 1 }} AS clicks_{{ w }}d,
        packed_{{ w }}d & {{ 2 ** pack_bits - 1 }} AS purchases_{{ w }}d{{ "," if not loop.last }}
{%- endfor %}
    FROM windowed
){% endif %}
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
FROM {{ "unpacked" if pack_bits else "windowed" }} AS s
JOIN fe_day_context AS c ON c.d = s.d
