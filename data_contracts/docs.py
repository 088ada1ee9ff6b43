"""Great Expectations validation of a table's rows, and its publication as Data Docs.

`validate_rows` runs a suite over a dataframe batch of the `sidflow` pandas data source (the
suite, a validation definition and a checkpoint are saved in the GX project, so a GX user
finds them there) without storing the result: a day's result is stored and rendered only
when the day is published (`publish.py`), together with its warehouse rows and files.
`publish_validation` stores it as the one result of its (table, batch): the run is named by
the batch (`day=2026-01-01`, `history`), the page names its data asset, and the results of
earlier runs of the same batch are removed, so Data Docs hold one page per table and day.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import great_expectations as gx
import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

from data_contracts.gx_project import gx_context

DATASOURCE = "sidflow"


def _batch_definition(ctx: gx.data_context.FileDataContext, table: str):  # noqa: ANN202
    source = ctx.data_sources.add_or_update_pandas(DATASOURCE)
    asset = next((a for a in source.assets if a.name == table), None) or source.add_dataframe_asset(
        table
    )
    return next(
        (b for b in asset.batch_definitions if b.name == "day"), None
    ) or asset.add_batch_definition_whole_dataframe("day")


def validate_rows(
    gx_root: Path, table: str, suite: gx.ExpectationSuite, df: pd.DataFrame
) -> ExpectationSuiteValidationResult:
    """Validate `df` (the `table` data asset) against `suite`, COMPLETE result, not stored."""
    ctx = gx_context(str(gx_root))
    batch_def = _batch_definition(ctx, table)
    suite = ctx.suites.add_or_update(suite)
    vd = ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{table}_contract", data=batch_def, suite=suite)
    )
    ctx.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{table}_checkpoint",
            validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format={"result_format": "COMPLETE"},
        )
    )
    batch = batch_def.get_batch(batch_parameters={"dataframe": df})
    return batch.validate(suite, result_format="COMPLETE")


def result_json(result: ExpectationSuiteValidationResult, table: str, key: str) -> dict:
    """The result as JSON, naming its data asset and batch on the Data Docs page."""
    out = result.to_json_dict()
    meta = out.setdefault("meta", {})
    meta["batch_spec"] = {**(meta.get("batch_spec") or {}), "data_asset_name": table}
    meta["batch"] = key
    return out


def _keys(ctx: gx.data_context.FileDataContext, table: str, key: str) -> list:
    return [
        k
        for k in ctx.validation_results_store.list_keys()
        if k.expectation_suite_identifier.name == table and k.run_id.run_name == key
    ]


def publish_validation(gx_root: Path, table: str, key: str, result: dict) -> Path:
    """Store `result` as the one validation of (table, key), render its page and the index;
    returns the index page."""
    ctx = gx_context(str(gx_root))
    store = ctx.validation_results_store
    for old in _keys(ctx, table, key):
        store.store_backend.remove_key(old.to_tuple())
    obj = store.deserialize(result)
    run_time = dt.datetime.now(dt.UTC)
    obj.meta["run_id"] = RunIdentifier(run_name=key, run_time=run_time)
    obj.meta["validation_time"] = run_time
    new = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=table),
        run_id=RunIdentifier(run_name=key, run_time=run_time),
        batch_identifier=f"{table}-{key}",
    )
    store.set(new, obj)
    ctx.build_data_docs(resource_identifiers=[new])
    return Path(gx_root) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def docs_pages(gx_root: Path, table: str, key: str) -> list[Path]:
    """The Data Docs pages of (table, key) (one after a publication)."""
    site = Path(gx_root) / "gx" / "uncommitted" / "data_docs" / "local_site" / "validations"
    folder = site / table / key
    return sorted(folder.rglob("*.html")) if folder.exists() else []
