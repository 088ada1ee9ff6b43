"""Great Expectations suites, one per canonical table, built from `contracts:` in params.yaml.

Every expectation carries `meta = {"rule": ..., "column": ...}`: the rule's name (the reason a
row is quarantined) and the canonical column it is about. The order of a suite is the order
of its rules: a row that breaks several is quarantined with the first as its reason and
counted once under each. Critical expectations quarantine rows; warning ones (an engagement
without a kept exposure in its request) only count them. Referential checks use flags the
runner computes (`_item_known`, ...) rather than huge value sets, so Data Docs stay readable;
their `notes` say which catalogue the ids were checked against.
"""

from __future__ import annotations

import datetime as dt

import great_expectations as gx
import great_expectations.expectations as gxe

from ingestion.batches import READ_ERROR, TYPE_ERROR
from ingestion.canonical import EVENT_TYPES, SCHEMAS
from sidflow.config import ContractParams

READ_RULE = "line cannot be read"
TYPE_RULE = "value does not parse"  # the row's own message names the column: `price: not a float`
ORPHAN_RULE = "click/cart/purchase without a kept exposure in the same request"
KEYS = {"events": "event_id", "items": "item_id", "users": "user_id"}


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,}"


def _rule(exp: gxe.Expectation, rule: str, column: str | None) -> gxe.Expectation:
    exp.meta = {"rule": rule, "column": column}
    return exp


def _row_rules(table: str, limits: ContractParams) -> list[gxe.Expectation]:
    """Readable, parsed, not null, not too long, in range: the rules every table shares."""
    schema = SCHEMAS[table]
    rules = [
        _rule(gxe.ExpectColumnValuesToBeNull(column=READ_ERROR), READ_RULE, None),
        _rule(gxe.ExpectColumnValuesToBeNull(column=TYPE_ERROR), TYPE_RULE, None),
    ]
    rules += [
        _rule(gxe.ExpectColumnValuesToNotBeNull(column=c.name), f"{c.name} is null", c.name)
        for c in schema
        if not c.nullable
    ]
    for c in schema:
        if c.kind == "string":
            n = limits.length(c.name)
            rules.append(
                _rule(
                    gxe.ExpectColumnValueLengthsToBeBetween(column=c.name, max_value=n),
                    f"{c.name} longer than {n} characters",
                    c.name,
                )
            )
        elif c.name in limits.ranges:
            low, high = limits.ranges[c.name]
            rules.append(
                _rule(
                    gxe.ExpectColumnValuesToBeBetween(column=c.name, min_value=low, max_value=high),
                    f"{c.name} outside [{_num(low)}, {_num(high)}]",
                    c.name,
                )
            )
    return rules


def _unique(table: str) -> gxe.Expectation:
    key = KEYS[table]
    return _rule(gxe.ExpectColumnValuesToBeUnique(column=key), f"duplicate {key} (first kept)", key)


def events_suite(
    limits: ContractParams,
    day_start: dt.datetime,
    day_end: dt.datetime,
    scenes: list[str],
    items_from: str = "",
    users_from: str = "",
) -> gx.ExpectationSuite:
    """Contract for `events`: [day_start, day_end) bounds the timestamps; `items_from` and
    `users_from` say which catalogue and users the ids are checked against."""
    suite = gx.ExpectationSuite(name="events")
    for exp in [
        *_row_rules("events", limits),
        _rule(
            gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
            "unknown event_type",
            "event_type",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeInSet(column="scene", value_set=scenes),
            "unknown scene",
            "scene",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeBetween(
                column="ts", min_value=day_start, max_value=day_end, strict_max=True
            ),
            "ts outside the partition day (future or late)",
            "ts",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeInSet(
                column="_item_known", value_set=[True], notes=f"catalogue: {items_from}"
            ),
            "item_id not in the catalogue",
            "item_id",
        ),
        _rule(
            gxe.ExpectColumnValuesToBeInSet(
                column="_user_known", value_set=[True], notes=f"users: {users_from}"
            ),
            "user_id not among known users",
            "user_id",
        ),
        _unique("events"),
        _rule(
            gxe.ExpectColumnValuesToBeInSet(
                column="_exposed_in_request",
                value_set=[True],
                severity="warning",
                notes="kept: features count the engagement without an exposure (docs/features.md)",
            ),
            ORPHAN_RULE,
            "request_id",
        ),
    ]:
        suite.add_expectation(exp)
    return suite


def items_suite(limits: ContractParams) -> gx.ExpectationSuite:
    """Contract for the `items` catalogue."""
    suite = gx.ExpectationSuite(name="items")
    for exp in [*_row_rules("items", limits), _unique("items")]:
        suite.add_expectation(exp)
    return suite


def users_suite(limits: ContractParams) -> gx.ExpectationSuite:
    """Contract for the `users` table."""
    suite = gx.ExpectationSuite(name="users")
    for exp in [*_row_rules("users", limits), _unique("users")]:
        suite.add_expectation(exp)
    return suite
