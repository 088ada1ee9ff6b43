"""Great Expectations suites, one per canonical table.

Row-level rules (nulls, ranges, allowed values, uniqueness, referential and
request-consistency flags) drive quarantine: a row that breaks any of them is moved
to quarantine with the rule's name. Referential checks use flags computed by the
runner (`_item_known`, ...) rather than huge value sets, so Data Docs stay readable.
"""

from __future__ import annotations

import datetime as dt

import great_expectations as gx
import great_expectations.expectations as gxe

from ingestion.canonical import EVENT_TYPES, SCHEMAS, TYPE_ERROR_COLUMN

MAX_PRICE = 1_000_000.0
MAX_POSITION = 1_000


def _rule(exp: gxe.Expectation, rule: str) -> gxe.Expectation:
    exp.meta = {"rule": rule}
    return exp


def _not_null(table: str) -> list[gxe.Expectation]:
    return [
        _rule(gxe.ExpectColumnValuesToNotBeNull(column=c.name), f"{c.name} is null")
        for c in SCHEMAS[table]
        if not c.nullable
    ] + [
        _rule(
            gxe.ExpectColumnValuesToBeNull(column=TYPE_ERROR_COLUMN),
            "a value has the wrong type",
        )
    ]


def events_suite(
    day_start: dt.datetime, day_end: dt.datetime, scenes: list[str]
) -> gx.ExpectationSuite:
    """Contract for one day of `events`: [day_start, day_end) bounds the timestamps."""
    suite = gx.ExpectationSuite(name="events")
    for exp in [
        *_not_null("events"),
        _rule(gxe.ExpectColumnValuesToBeUnique(column="event_id"), "duplicate event_id"),
        _rule(
            gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
            "unknown event_type",
        ),
        _rule(gxe.ExpectColumnValuesToBeInSet(column="scene", value_set=scenes), "unknown scene"),
        _rule(
            gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, max_value=MAX_PRICE),
            "price is negative or absurd",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeBetween(
                column="position", min_value=0, max_value=MAX_POSITION
            ),
            "position out of range",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeBetween(
                column="ts", min_value=day_start, max_value=day_end, strict_max=True
            ),
            "ts outside the partition day (future or late)",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeInSet(column="_item_known", value_set=[True]),
            "item_id not in the catalogue",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeInSet(column="_user_known", value_set=[True]),
            "user_id not among known users",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeInSet(column="_exposed_in_request", value_set=[True]),
            "click/cart/purchase without an exposure in the same request",
        ),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
    ]:
        suite.add_expectation(exp)
    return suite


def items_suite() -> gx.ExpectationSuite:
    """Contract for the `items` catalogue."""
    suite = gx.ExpectationSuite(name="items")
    for exp in [
        *_not_null("items"),
        _rule(gxe.ExpectColumnValuesToBeUnique(column="item_id"), "duplicate item_id"),
        _rule(
            gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, max_value=MAX_PRICE),
            "price is negative or absurd",
        ),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
    ]:
        suite.add_expectation(exp)
    return suite


def users_suite() -> gx.ExpectationSuite:
    """Contract for the `users` table."""
    suite = gx.ExpectationSuite(name="users")
    for exp in [
        *_not_null("users"),
        _rule(gxe.ExpectColumnValuesToBeUnique(column="user_id"), "duplicate user_id"),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
    ]:
        suite.add_expectation(exp)
    return suite
