"""`sidflow retriever` (train + evaluate one day) and `sidflow evaluate [--ablations]`.

Each command imports its stage when it runs (heavy imports), so `sidflow --help` stays fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

from lifecycle.cli.settings import load


def _day(args: argparse.Namespace, warehouse) -> dt.date | None:
    if args.day:
        return dt.date.fromisoformat(args.day)
    days = warehouse.days()
    return days[-1] if days else None


def cmd_retriever(args: argparse.Namespace) -> int:
    """Train the day's retriever on the warehouse and its SID table, then evaluate it; with
    `--data` and `--sid` (the DVC pipeline), on a canonical parquet folder and a SID version
    folder instead, as of the folder's last day."""
    from ingestion.warehouse import Warehouse

    params = load(args)
    if args.data:
        if not args.sid or not args.out:
            print("sidflow retriever --data needs --sid and --out", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory(prefix="sidflow-retriever-") as tmp:
            wh = Warehouse(Path(tmp) / "warehouse.duckdb")  # the folder's own, thrown away
            wh.load_folder(Path(args.data))
            return _train_and_evaluate(params, wh, wh.days()[-1], Path(args.sid), Path(args.out))
    from models.retriever.ablations import sid_version_dir
    from sidflow.workdir import Workdir

    work = Workdir(params.workdir)
    wh = Warehouse(work.warehouse)
    day = _day(args, wh)
    if day is None:
        print(f"no events in {wh.path}: run `sidflow run` first", file=sys.stderr)
        return 2
    sid_day = dt.date.fromisoformat(args.sid_day) if args.sid_day else day
    out = Path(args.out) if args.out else work.retriever_dir(day)
    return _train_and_evaluate(params, wh, day, sid_version_dir(work, sid_day), out)


def _train_and_evaluate(params, wh, day: dt.date, sid: Path, out: Path) -> int:  # noqa: ANN001
    """train_run + evaluate_run under the protocol the data calls for; prints a JSON summary."""
    from models.retriever.protocol import resolve_protocol
    from models.retriever.stage import evaluate_run, train_run, warehouse_inputs
    from models.tokenizer import load_sid_table

    table = load_sid_table(sid)
    events, items, users = warehouse_inputs(wh, day)
    protocol = resolve_protocol(params.retriever.eval.protocol, wh, day)
    info = train_run(
        params,
        events,
        items,
        users,
        table.frame,
        day,
        out,
        codebook_size=table.K,
        protocol=protocol,
        sid_folder=sid,
    )
    metrics = evaluate_run(params, out, progress=True).to_json()
    print(
        json.dumps(
            {
                "day": str(day),
                "folder": str(out),
                "train": info.summary(),
                "metrics": metrics,
            },
            indent=2,
            default=str,
        )
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate the day's retriever run, or (--ablations) build the whole ablation table."""
    from ingestion.warehouse import Warehouse
    from models.retriever.ablations import run_ablations
    from models.retriever.stage import evaluate_run
    from sidflow.workdir import Workdir

    params = load(args)
    work = Workdir(params.workdir)
    wh = Warehouse(work.warehouse)
    day = _day(args, wh)
    if day is None:
        print(f"no events in {wh.path}: run `sidflow run` first", file=sys.stderr)
        return 2
    if args.ablations:
        variants = [v for v in args.variants.split(",") if v] if args.variants is not None else None
        baselines = args.baselines.split(",") if args.baselines is not None else None
        sid_day = dt.date.fromisoformat(args.sid_day) if args.sid_day else None
        results = run_ablations(
            params,
            wh,
            day,
            variants,
            [b for b in baselines or [] if b] if baselines is not None else None,
            progress=True,
            sid_day=sid_day,
        )
        folder = work.reports / "retriever" / f"day={day.isoformat()}"
        print((folder / "ablations.md").read_text())
        print(json.dumps({"report": str(folder), "methods": list(results)}, indent=2))
        return 0
    out = work.retriever_dir(day)
    if not (out / "model.safetensors").exists():
        print(f"no retriever for {day} in {out}: run `sidflow retriever` first", file=sys.stderr)
        return 2
    print(json.dumps(evaluate_run(params, out, progress=True).to_json(), indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the retriever subcommands on the `sidflow` parser."""
    s = sub.add_parser("retriever", help="train + evaluate the generative retriever for a day")
    s.add_argument("--day", help="as-of day YYYY-MM-DD (default: the last warehouse day)")
    s.add_argument("--size", help="world size preset")
    s.add_argument("--out", help="run folder (default: <workdir>/models/retriever/day=<d>)")
    s.add_argument("--sid-day", help="use the SID version of this day (default: --day)")
    s.add_argument(
        "--data", help="canonical parquet folder instead of the warehouse (the DVC pipeline)"
    )
    s.add_argument("--sid", help="with --data: the SID version folder (or its artefacts)")
    s.set_defaults(func=cmd_retriever)

    s = sub.add_parser("evaluate", help="evaluate the retriever; --ablations for the table")
    s.add_argument("--day", help="as-of day YYYY-MM-DD (default: the last warehouse day)")
    s.add_argument("--size", help="world size preset")
    s.add_argument(
        "--ablations",
        action="store_true",
        help="train + evaluate every variant and baseline; writes Markdown/JSON/PNG",
    )
    s.add_argument("--variants", help="comma list (default: all ablations + tiger)")
    s.add_argument("--baselines", help="comma list (default: popularity,sasrec_bce,sasrec_ce)")
    s.add_argument("--sid-day", help="use the SID version of this day (default: --day)")
    s.set_defaults(func=cmd_evaluate)
