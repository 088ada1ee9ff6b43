-- The only input of every feature table: events of days [first_day - max_window, last_day]
-- with the item's attributes (the keys of the u2i cross features, DIG §3.1).
-- Nothing after last_day is read, so a row for day d never sees a later event.
-- day = first_day - max_window is read only to notice keys whose largest window just expired.
CREATE OR REPLACE TEMP TABLE fe_events AS
SELECT
    e.user_id,
    e.item_id,
    e.day,
    e.ts,
    e.event_type,
    e.price,
    i.cat_l2,
    i.cat_l3,
    i.brand,
    i.seller
FROM events AS e
LEFT JOIN items AS i USING (item_id)
WHERE e.day BETWEEN CAST($first_day AS DATE) - {{ max_window }} AND CAST($last_day AS DATE);
