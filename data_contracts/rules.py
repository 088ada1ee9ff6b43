"""From a Great Expectations result to the rules each row broke, with no cascades.

GX reports, per expectation, the rows it did not expect. `RowRules` turns that into one
boolean column per critical rule (suite order) and removes what is only a consequence:
- an unreadable line broke one rule, `line cannot be read` (its empty values are not nulls);
- a value that did not parse broke `<column>: not a <type>`, not also `<column> is null`;
- a repeated key is a duplicate of the first occurrence *that is kept*: when the first one is
  bad (or in a batch quarantined whole) the next good one is kept instead, so a good row is
  never quarantined because another row was bad.
Each row counts once under every rule it broke; its reason is the first.
"""

from __future__ import annotations

from dataclasses import dataclass

import great_expectations as gx
import pandas as pd

from data_contracts.suites import READ_RULE, TYPE_RULE
from ingestion.batches import READ_ERROR, TYPE_COLUMN, TYPE_ERROR, TYPE_VALUE

VALUE_CHARS = 80
CRITICAL = "critical"


def _hits(r, index: pd.Index) -> pd.Series:  # noqa: ANN001  (an ExpectationValidationResult)
    hit = pd.Series(False, index=index)
    if not r.success:
        hit.loc[list(r.result.get("unexpected_index_list") or [])] = True
    return hit


def duplicates(key: pd.Series, eligible: pd.Series) -> pd.Series:
    """Rows that repeat a key. Per key the first `eligible` row is kept; without one, the
    first occurrence (itself bad for another reason) counts as the original."""
    present = key.notna()
    kept = pd.Series(False, index=key.index)
    kept.loc[key[eligible & present].drop_duplicates(keep="first").index] = True
    return present & ~kept & (key.isin(set(key[kept])) | key.duplicated(keep="first"))


def _shown(value: object) -> str:
    text = "null" if value is None or (not isinstance(value, str) and pd.isna(value)) else value
    return str(text)[:VALUE_CHARS]


@dataclass
class RowRules:
    """Per row and critical rule: whether the row broke it; and each rule's column."""

    broke: pd.DataFrame  # bool, columns = rule names in suite order
    columns: dict[str, str | None]
    unique: tuple[str, str] | None  # (rule, key column) of the uniqueness rule

    @classmethod
    def from_result(
        cls,
        result: gx.core.ExpectationSuiteValidationResult,
        df: pd.DataFrame,
        order: list[str],
    ) -> RowRules:
        """The critical rules each row of `df` broke, consequences removed; `order`: the
        suite's rules in order (GX reports results in an order of its own)."""
        broke, columns, unique = {}, {}, None
        for r in result.results:
            cfg = r.expectation_config
            if str(getattr(cfg.severity, "value", cfg.severity)) != CRITICAL:
                continue
            meta = cfg.meta or {}
            rule = meta.get("rule", cfg.type)
            broke[rule], columns[rule] = _hits(r, df.index), meta.get("column")
            if cfg.type == "expect_column_values_to_be_unique":
                unique = (rule, cfg.kwargs["column"])
        table = pd.DataFrame({r: broke[r] for r in order if r in broke}, index=df.index)
        unreadable = df[READ_ERROR].notna()
        if unreadable.any():
            table.loc[unreadable, :] = False
            table.loc[unreadable, READ_RULE] = True
        for rule, column in columns.items():
            if column and rule == f"{column} is null":
                table.loc[df[TYPE_COLUMN] == column, rule] = False
        rules = cls(table, columns, unique)
        rules.recount_duplicates(df, pd.Series(False, index=df.index))
        return rules

    def recount_duplicates(
        self, df: pd.DataFrame, blocked: pd.Series, within: pd.Series | None = None
    ) -> None:
        """Duplicates again, the first kept occurrence chosen among rows that break no other
        rule and are not `blocked` (in a batch quarantined whole); `within`: only keys
        repeated inside the same group (batch) count."""
        if self.unique is None:
            return
        rule, key = self.unique
        others = self.broke.drop(columns=[rule]).any(axis=1)
        keys = df[key]
        if within is not None:
            keys = keys.where(keys.isna(), within.astype(str) + "\x00" + keys.astype(str))
        self.broke[rule] = duplicates(keys, ~others & ~blocked)

    @property
    def bad(self) -> pd.Series:
        """Rows that broke at least one critical rule."""
        return self.broke.any(axis=1)

    def labels(self, df: pd.DataFrame) -> pd.DataFrame:
        """Per row the rule names it broke, with the parse rule named by its column
        (`price: not a float`)."""
        names = pd.DataFrame(
            {r: self.broke[r].map({True: r, False: ""}) for r in self.broke.columns}
        )
        if TYPE_RULE in names:
            names[TYPE_RULE] = names[TYPE_RULE].where(names[TYPE_RULE] == "", df[TYPE_ERROR])
        return names

    def counts(self, df: pd.DataFrame) -> dict[str, int]:
        """Rule -> rows that broke it (each row once per rule)."""
        out: dict[str, int] = {}
        names = self.labels(df)
        for rule in names.columns:
            hit = names[rule][names[rule] != ""]
            for label, n in hit.value_counts(sort=False).items():
                out[label] = out.get(label, 0) + int(n)
        return out

    def first(self, df: pd.DataFrame) -> pd.DataFrame:
        """Per bad row: `rule` (the first it broke), `rules` (all, `; `), `column`, `reason`."""
        bad = self.bad
        names = self.labels(df)[bad]
        rows = df[bad]
        joined = pd.Series("", index=names.index, dtype=object)
        for rule in names.columns:
            hit = names[rule] != ""
            joined[hit] = (
                joined[hit].where(joined[hit] == "", joined[hit] + "; ") + names[rule][hit]
            )
        first_rule = self.broke[bad].idxmax(axis=1)
        label = pd.Series([names.at[i, r] for i, r in first_rule.items()], index=names.index)
        column = first_rule.map(self.columns).astype(object)
        reason = pd.Series("", index=names.index, dtype=object)
        for rule in first_rule.unique():
            at = first_rule == rule
            if rule == READ_RULE:
                reason[at] = rows.loc[at, READ_ERROR]
            elif rule == TYPE_RULE:
                column[at] = rows.loc[at, TYPE_COLUMN]
                value = rows.loc[at, TYPE_VALUE].map(lambda v: repr(_shown(v)))
                reason[at] = rows.loc[at, TYPE_ERROR] + " (" + value + ")"
            elif self.columns[rule] and rule != f"{self.columns[rule]} is null":
                reason[at] = f"{rule}: " + rows.loc[at, self.columns[rule]].map(_shown)
            else:
                reason[at] = rule
        return pd.DataFrame({"rule": label, "rules": joined, "column": column, "reason": reason})
