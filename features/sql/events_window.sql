-- The only input of every feature table: events of days [first_day - max_window, last_day]
-- with the item's attributes (the keys of the u2i cross features, DIG §3.1).
-- Nothing after last_day is read, so a row for day d never sees a later event.
-- day = first_day - max_window is read only to notice keys whose largest window just expired.
--
-- Key columns are typed as ENUMs of their sorted values (fe_<key>_t): grouping, joining and
-- sorting then work on the dictionary codes (in value order) instead of strings, and parquet
-- gets the values back as strings. Temporary types: they live as long as the connection.
-- A key without any value (e.g. no item has a seller) stays VARCHAR: an ENUM needs a member.
{% for key in enum_keys %}
DROP TYPE IF EXISTS fe_{{ key }}_t;
CREATE TEMP TYPE fe_{{ key }}_t AS ENUM (
    SELECT DISTINCT {{ key }}
    FROM {{ key_sources[key] }}
    WHERE {{ key }} IS NOT NULL
    ORDER BY {{ key }}
);
{% endfor %}
CREATE OR REPLACE TEMP TABLE fe_events AS
SELECT
    e.day,
    e.ts,
    e.event_type,
    e.price{% for key, source in key_sources.items() %},
    CAST({{ source[0] }}.{{ key }} AS {{ "fe_%s_t" % key if key in enum_keys else "VARCHAR" }}) AS {{ key }}
{%- endfor %}
FROM events AS e  -- e / i: the first letter of the key's source table
LEFT JOIN items AS i USING (item_id)
WHERE e.day BETWEEN CAST($first_day AS DATE) - {{ max_window }} AND CAST($last_day AS DATE);
