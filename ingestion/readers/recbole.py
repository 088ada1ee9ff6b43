"""RecBole atomic files: `<dataset>.inter` plus optional `<dataset>.item` and `<dataset>.user`.

Atomic files are tab-separated with a `name:type` header (`user_id:token`, `title:token_seq`,
`timestamp:float`); values may use CSV quoting (as the PLRec `item_description.csv` does).
Field names (before the ':') are matched after `data.columns` / `item_columns` /
`user_columns`; RecBole's `timestamp` is the canonical `ts`. RecBole logs are implicit
feedback: unless `data` says otherwise, every row is a `purchase` in the `review` scene and
timestamps are epoch seconds. An item `categories` field is read as a category path into
cat_l1..cat_l3, from space-separated tokens or a quoted list (`'Beauty', 'Skin Care'`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from ingestion.readers.folder import read_text_table, source_folder
from ingestion.readers.mapping import map_events, map_items, map_users
from ingestion.readers.tables import SourceError, SourceTables, finish, new_report
from sidflow.config import DataParams

DEFAULTS = {"event_type": "purchase", "scene": "review"}  # implicit feedback
CATEGORY_FIELD = "categories"
CATEGORY_LEVELS = ("cat_l1", "cat_l2", "cat_l3")


def read_atomic(path: Path, rel: str, report: dict) -> tuple[pd.DataFrame, dict[str, str]]:
    """An atomic file as strings with the header's field names; and name -> RecBole type."""
    df = read_text_table(path, rel, report, delimiter="\t")
    names, types = {}, {}
    for col in df.columns:
        field, _, kind = col.partition(":")
        names[col] = field.strip()
        types[field.strip()] = kind.strip()
    return df.rename(columns=names), types


def category_path(value: object) -> list[str]:
    """A category path from a token_seq (`Beauty Makeup Face`) or a quoted list
    (`'Beauty', 'Skin Care', 'Face'`, optionally in brackets)."""
    if value is None or pd.isna(value):
        return []
    text = str(value).strip()
    if text[:1] in ("'", '"', "["):
        try:
            parsed = ast.literal_eval(text if text.startswith("[") else f"[{text}]")
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, list | tuple):
            return [str(p).strip() for p in parsed if str(p).strip()]
    return text.split()


def _with_category_levels(raw: pd.DataFrame, data: DataParams) -> pd.DataFrame:
    """Replace a `categories` field by cat_l1..cat_l3 unless those are given already."""
    given = any(data.item_columns.get(c, c) in raw.columns for c in CATEGORY_LEVELS)
    if CATEGORY_FIELD not in raw.columns or given or CATEGORY_FIELD in data.item_columns.values():
        return raw
    paths = raw[CATEGORY_FIELD].map(category_path)
    levels = {
        c: paths.map(lambda p, k=k: p[k] if len(p) > k else None)
        for k, c in enumerate(CATEGORY_LEVELS)
    }
    return raw.drop(columns=CATEGORY_FIELD).assign(**levels)


def _ts_unit(data: DataParams, ts_type: str | None) -> str:
    """Epoch seconds unless `data.ts_unit` says ms, or says datetime for a non-float field."""
    if data.ts_unit != "datetime":
        return data.ts_unit
    explicit = "ts_unit" in data.model_fields_set
    return "datetime" if explicit and ts_type not in ("float", "float_seq") else "s"


def read_recbole(data: DataParams, name: str) -> SourceTables:
    """Canonical tables of a folder holding exactly one RecBole `<dataset>.inter`."""
    folder = source_folder(data)
    inters = sorted(p for p in folder.glob("*.inter") if p.is_file())
    if len(inters) != 1:
        found = [p.name for p in inters] or "none"
        raise SourceError(
            folder,
            f"must hold exactly one RecBole .inter file (found: {found})",
            fix="point data.path at a folder with one <dataset>.inter (move split files "
            "such as .train.inter / .test.inter elsewhere)",
        )
    inter = inters[0]
    dataset = inter.name[: -len(".inter")]
    report = new_report(folder, "recbole")
    report["dataset"] = dataset
    files = [inter]
    report["files"].append(inter.name)
    raw, types = read_atomic(inter, inter.name, report)
    columns = dict(data.columns)
    if "ts" not in columns and "ts" not in raw.columns and "timestamp" in raw.columns:
        columns["ts"] = "timestamp"
    unit = _ts_unit(data, types.get(columns.get("ts", "ts")))
    report["ts_unit"] = unit
    events = map_events(
        raw, data, inter, inter.name, report, columns=columns, defaults=DEFAULTS, ts_unit=unit
    )
    tables: dict[str, pd.DataFrame | None] = {"items": None, "users": None}
    for table, suffix, mapper in (("items", "item", map_items), ("users", "user", map_users)):
        path = folder / f"{dataset}.{suffix}"
        if not path.is_file():
            continue
        files.append(path)
        report["files"].append(path.name)
        table_raw, _ = read_atomic(path, path.name, report)
        if table == "items":
            table_raw = _with_category_levels(table_raw, data)
        tables[table] = mapper(table_raw, data, path, report)
    return finish(name, events, tables["items"], tables["users"], report, files)
