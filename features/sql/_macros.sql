{#- Shared expressions of the *_stats.sql feature queries (Jinja macros). -#}

{#- Windowed sum of a daily measure over (d-w, d]; `k` is the changed key, `x` its daily rows
    (already joined over the largest window, which needs no filter). -#}
{% macro window_sum(measure, w) -%}
{% if w == max_window %}sum(x.{{ measure }}){% else %}sum(x.{{ measure }}) FILTER (WHERE x.day > k.d - {{ w }}){% endif %}
{%- endmacro %}

{#- A count that exists only if the source has produced this event type by day d:
    NULL (an empty feature) otherwise, never an invented 0. -#}
{% macro count_if(flag, expr) -%}
CASE WHEN c.{{ flag }} THEN CAST(coalesce({{ expr }}, 0) AS BIGINT) END
{%- endmacro %}

{#- Posterior mean of a rate under a Beta(m*p, m*(1-p)) prior (day_context.sql):
    (successes + m*p) / (trials + m); NULL when either event type is missing or p is unknown. -#}
{% macro smoothed(flag_num, flag_den, num, den, prior, m) -%}
CASE WHEN c.{{ flag_num }} AND c.{{ flag_den }}
     THEN (coalesce({{ num }}, 0) + {{ m }} * c.{{ prior }}) / (coalesce({{ den }}, 0) + {{ m }}) END
{%- endmacro %}
