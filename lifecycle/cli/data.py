"""`sidflow params | world | load-amazon | validate | run | features`: data in, checked, run.

Each command imports its stage when it runs (Dagster, Great Expectations, Feast and torch are
heavy imports), so `sidflow --help` stays fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from lifecycle.cli.settings import load, overrides
from sidflow.workdir import Workdir


def cmd_params(args: argparse.Namespace) -> int:
    """Print the validated settings."""
    print(load(args).model_dump_json(indent=2))
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    """Generate the synthetic world as canonical parquet, and print its size and long tail."""
    from ingestion.world import World
    from ingestion.world_stats import exposure_long_tail

    params = load(args)
    t0 = time.perf_counter()
    world = World(params.world)
    days = world.days[: args.days] if args.days else world.days
    out = (
        Path(args.out)
        if args.out
        else Workdir(params.workdir).dataset_dir(f"world-{params.world.size}")
    )
    (out / "events").mkdir(parents=True, exist_ok=True)
    world.items().to_parquet(out / "items.parquet", index=False)
    world.users().to_parquet(out / "users.parquet", index=False)
    n_events, exposures = 0, []
    for day in days:
        ev = world.events(day)
        ev.to_parquet(out / "events" / f"day={day.isoformat()}.parquet", index=False)
        n_events += len(ev)
        exposures.append(ev.loc[ev["event_type"] == "exposure", "item_id"])
    seconds = time.perf_counter() - t0
    report = {
        "size": params.world.size,
        "seed": params.world.seed,
        "days": len(days),
        "users": world.population.n_users,
        "items": world.catalog.n_items,
        "events": n_events,
        "seconds": round(seconds, 2),
        "exposure_long_tail": exposure_long_tail(exposures, world.catalog.n_items),
        "out": str(out),
    }
    print(json.dumps(report, indent=2))
    return 0


def cmd_load_amazon(args: argparse.Namespace) -> int:
    """Load an Amazon 5-core folder: canonical tables, contracts, warehouse and the split."""
    from data_contracts.publish import ContractStore
    from data_contracts.references import Reference
    from data_contracts.runner import validate_table
    from ingestion.readers.amazon import load_amazon
    from ingestion.warehouse import Warehouse

    params = load(args)
    wd = Workdir(params.workdir)
    ds = load_amazon(args.path, args.name)
    out = wd.dataset_dir(args.name)
    paths = ds.write(out)
    known = {
        t: Reference(frozenset(getattr(ds, t)[k]), f"the dataset's {t}")
        for t, k in (("items", "item_id"), ("users", "user_id"))
    }
    reports = {
        t: validate_table(
            t,
            [paths[t]],
            wd.gx_root,
            batch=args.name,
            main=paths[t],
            limits=params.contracts,
            scenes=params.data.scenes,
            items=known["items"],
            users=known["users"],
        )
        for t in ("items", "users", "events")
    }
    wh = Warehouse(out / "warehouse.duckdb")
    store = ContractStore(out, wd.gx_root)
    for report in reports.values():
        if report.gate.passed:
            store.publish_report(report, wh, examples=params.contracts.examples)
    print(
        json.dumps(
            {
                **ds.report,
                "split": {r: int((ds.split["role"] == r).sum()) for r in ("valid", "test")},
                "contracts": {t: r.summary() for t, r in reports.items()},
                "warehouse": str(wh.path),
                "files": {k: str(v) for k, v in paths.items()},
                "data_docs": str(wd.data_docs_index),
            },
            indent=2,
            default=str,
        )
    )
    return 0 if all(r.gate.passed for r in reports.values()) else 1


def cmd_validate(args: argparse.Namespace) -> int:
    """Run a table's contract over files (or the batches landed for a day), as the pipeline
    does; the outcome is staged in `checks/<table>/<batch>/`, never published. Files given
    are judged as files (the first as the source's batch); the day's floor of good rows
    applies only with `--day` alone, to the day's landed batches."""
    from data_contracts.publish import ContractStore
    from data_contracts.references import reference_ids
    from data_contracts.runner import validate_table
    from ingestion.sources import raw_batches, source_batch
    from ingestion.warehouse import Warehouse

    params = load(args)
    wd = Workdir(params.workdir)
    day = dt.date.fromisoformat(args.day) if args.day else None
    if args.files:
        files = [Path(f) for f in args.files]
        main = files[0]  # the first file is judged as the source's batch
    else:
        files = raw_batches(wd, args.table, day) if day else []
        main = source_batch(wd, args.table, day, params.data.source) if day else None
    if not files:
        print("nothing to validate: give files, or --day with landed raw batches", file=sys.stderr)
        return 2
    wh = Warehouse(wd.root / "warehouse.duckdb")
    wh = wh if wh.path.exists() else None
    report = validate_table(
        args.table,
        files,
        wd.gx_root,
        day=day,
        main=main,
        limits=params.contracts,
        scenes=params.data.scenes,
        items=reference_ids("items", wh, day, raw_batches(wd, "items", day) if day else []),
        users=reference_ids("users", wh, None, raw_batches(wd, "users", day) if day else []),
        ts_unit=params.data.ts_unit,
        floor=None if not args.files else False,  # files given: a check of them, not the day
    )
    staged = ContractStore(wd.root, wd.gx_root, staging="checks").stage(
        report, params.contracts.examples
    )
    summary = report.summary(params.contracts.examples)
    print(json.dumps({**summary, "staged": str(staged)}, indent=2, default=str))
    return 0 if report.gate.passed else 1


def day_out_of_range(day: dt.date, days: list[dt.date], cal) -> str | None:  # noqa: ANN001
    """Why `--day` cannot run (None when it can): the message names the source's range."""
    if day in days:
        return None
    if cal.first_day <= day < cal.daily_from:
        return (
            f"{day} lies in the history batch ({cal.describe()}); it is loaded with the "
            "history, not as a daily partition (set data.daily_from to run it daily)"
        )
    return f"no data for {day}: {cal.describe()}, and nothing was landed for that day"


def _progress(line: str) -> None:
    """Each Dagster step as it starts and ends (orchestration.runner.StepProgress)."""
    print(line, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the source's calendar through Dagster: the history batch once, then its days."""
    from ingestion.calendar import EmptySourceError, daily_days, resolve_calendar
    from ingestion.readers import SourceError
    from ingestion.sources import make_source

    params = load(args)
    t0 = time.perf_counter()
    try:
        source = make_source(params)
        cal = resolve_calendar(params, source)
    except (SourceError, EmptySourceError, FileNotFoundError) as e:
        print(f"sidflow run: {e}", file=sys.stderr)
        return 2
    days = daily_days(params, source, cal)
    if args.day:
        day = dt.date.fromisoformat(args.day)
        why = day_out_of_range(day, days, cal)
        if why:
            print(f"sidflow run --day: {why}", file=sys.stderr)
            return 2
        days = [day]
    print(f"sidflow run: {cal.describe()}")
    from orchestration.runner import run_days, run_history, summarize  # Dagster: a heavy import

    progress = None if args.quiet else _progress
    hist = run_history(params, source, cal, overrides(args), progress=progress)
    if hist is not None:
        if hist.run_id is None:
            what = "up to date (same content as the last load)"
        elif hist.success:
            what = f"run {hist.run_id[:8]}  ok"
        else:
            what = (
                f"run {hist.run_id[:8]}  STOPPED ({', '.join(hist.failed_checks) or 'step failed'})"
            )
        print(f"  {hist.first}..{hist.last}  history_backfill  {what}")
        if not hist.success:
            print(
                "sidflow run: the history batch did not pass; daily days not run", file=sys.stderr
            )
            return 1
    if args.data_only:
        train_days: list[dt.date] | None = []
    else:
        train_days = None if args.train_every_day else days[-1:]
    runs = run_days(params, days, overrides(args), train_days=train_days, progress=progress)
    summary = summarize(params, days)
    for r in runs:
        status = "ok" if r.success else f"STOPPED ({', '.join(r.failed_checks) or 'step failed'})"
        print(f"  {r.day}  {r.job:<16} run {r.run_id[:8]}  {status}")
    rows = summary["rows"]
    print(f"\nsidflow daily pipeline: {len(runs)} day(s) in {time.perf_counter() - t0:.0f}s")
    print(
        f"  warehouse rows   events={rows['events']:,}  items={rows['items']:,}  users={rows['users']:,}"
    )
    print(
        f"  quarantined rows {sum(summary['quarantined_rows'].values()):,} {summary['quarantined_rows']}"
    )
    print(f"  warehouse        {summary['warehouse']}")
    print(f"  Data Docs        {summary['data_docs']}")
    print("  Dagster UI       make ui  (runs above are in its run history)")
    return 0 if all(r.success for r in runs) else 1


def cmd_features(args: argparse.Namespace) -> int:
    """Compute the feature tables of a day (or every warehouse day); optionally load them online."""
    from features.compute import compute_feature_tables
    from features.report import feature_table_markdown
    from ingestion.warehouse import Warehouse

    params = load(args)
    if args.describe:
        print(feature_table_markdown(params.features))
        return 0
    wd = Workdir(params.workdir)
    wh = Warehouse(wd.warehouse)
    days = wh.days()
    if not days:
        print(f"no events in {wh.path}: run `sidflow run` first", file=sys.stderr)
        return 2
    first = dt.date.fromisoformat(args.day) if args.day else days[0]
    last = dt.date.fromisoformat(args.day) if args.day else days[-1]
    report = compute_feature_tables(wh, wd.features_dir, params.features, first, last)
    out = {**report.summary(), "folder": str(wd.features_dir)}
    if args.materialize:
        from features.store import apply, materialize_day

        out["feast_apply"] = apply(params)
        out["materialized"] = materialize_day(params, last)
    print(json.dumps(out, indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the data commands on the `sidflow` parser."""
    s = sub.add_parser("params", help="print the validated settings")
    s.set_defaults(func=cmd_params)

    s = sub.add_parser("world", help="generate the synthetic world as canonical parquet")
    s.add_argument("--size", help="world size preset (tiny, small, medium, large)")
    s.add_argument("--days", type=int, help="only the first N days")
    s.add_argument("--out", help="output folder (default: <workdir>/datasets/world-<size>)")
    s.set_defaults(func=cmd_world)

    s = sub.add_parser("load-amazon", help="load an Amazon 5-core folder and pin its split")
    s.add_argument("path", help="folder laid out like amazon-beauty-2014-5core")
    s.add_argument("--name", default="amazon-beauty")
    s.set_defaults(func=cmd_load_amazon)

    s = sub.add_parser(
        "validate",
        help="run a data contract over files (the first is the source's batch) or a landed day",
    )
    s.add_argument("files", nargs="*")
    s.add_argument("--table", default="events", choices=["events", "items", "users"])
    s.add_argument("--day", help="partition day YYYY-MM-DD")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("run", help="run the source's history batch and days through Dagster")
    s.add_argument("--size", help="world size preset")
    s.add_argument("--day", help="only this daily partition YYYY-MM-DD")
    s.add_argument(
        "--data-only",
        action="store_true",
        help="ingest, contracts, warehouse and feature tables only (no training)",
    )
    s.add_argument(
        "--train-every-day",
        action="store_true",
        help="run the whole graph on every day (default: data stages only before the last day)",
    )
    s.add_argument("--quiet", action="store_true", help="no line per asset as it starts and ends")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("features", help="compute feature tables (DuckDB SQL) for a day or all days")
    s.add_argument("--day", help="only this day YYYY-MM-DD (default: every warehouse day)")
    s.add_argument("--size", help="world size preset")
    s.add_argument("--materialize", action="store_true", help="then feast apply + materialize")
    s.add_argument("--describe", action="store_true", help="print every feature's definition")
    s.set_defaults(func=cmd_features)
