-- Which keys get a row on day d: those whose features changed on d. A windowed count over
-- (d-w, d] changes only when the key has events on day d (they enter) or on day d-w (they
-- leave), so a key is written on d if it has events on d or on d-w for some window w.
-- The latest row at or before any time therefore holds the key's current values (a changelog),
-- which Feast's point-in-time join and materialization read; a row with all counts 0 is
-- written when the largest window empties. Feast TTLs must exceed the largest window.
CREATE OR REPLACE TEMP TABLE fe_changed_{{ name }} AS
SELECT DISTINCT {{ keys | join(", ") }}, CAST(day + o AS DATE) AS d
FROM fe_daily_{{ name }}
CROSS JOIN (SELECT unnest([0, {{ windows | join(", ") }}]) AS o) AS offsets
WHERE day + o BETWEEN CAST($first_day AS DATE) AND CAST($last_day AS DATE);
