"""The promotion gates as blocking Dagster asset checks (DESIGN.md, Gates).

sid_gate on `sid_table`, retriever_gate on `retriever_eval`, ranker_gate on `ranker_eval`:
each reads the metrics its asset wrote, compares them with `params.yaml`'s `gates:` thresholds
(`orchestration/gate_rules.py`) and fails with ERROR severity when a number misses, which stops
every downstream asset of the run (bundle, promotion): the promoted model keeps serving.
The data gate is the blocking `events_contract` check on `validated_events`.
"""

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from orchestration import gate_rules as g
from orchestration.resources import SidflowResource
from sidflow.config import Params
from sidflow.registry import Registry
from sidflow.workdir import Workdir


def _result(reports: Path, day: dt.date, stage: str, gates: list[g.Gate]) -> dg.AssetCheckResult:
    """Record the day's gate results and turn them into one check result."""
    g.record(reports, day, stage, gates)
    missed = [x.message for x in gates if not x.passed]
    table = "| gate | value | threshold | passed |\n|---|---|---|---|\n" + "\n".join(
        f"| {x.name} | {'missing' if x.value is None else f'{x.value:.4f}'} | "
        f"{x.op} {x.threshold:.4f} | {'yes' if x.passed else '**no**'} |"
        for x in gates
    )
    return dg.AssetCheckResult(
        passed=not missed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(missed) if missed else f"all {len(gates)} {stage} gates passed",
        metadata={
            "missed": dg.MetadataValue.json(missed),
            "gates": dg.MetadataValue.md(table),
            "report": dg.MetadataValue.path(str(g.gates_path(reports, day))),
        },
    )


def promoted_metrics(params: Params, stage: str) -> dict | None:
    """Metrics the promoted model was promoted with (None when nothing is promoted yet)."""

    current = Registry(Workdir.of(params).registry).current()
    promoted = current.get("promoted") if current else None
    return (promoted or {}).get("metrics", {}).get(stage)


def _check(
    partitions: dg.PartitionsDefinition,
    asset: str,
    stage: str,
    metrics_file: Callable[[Workdir, dt.date], Path],
    evaluate: Callable[[dict, Params], list[g.Gate]],
    description: str,
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=f"{stage}_gate",
        blocking=True,
        partitions_def=partitions,
        description=description,
    )
    def gate(context: dg.AssetCheckExecutionContext, sidflow: SidflowResource):
        day = dt.date.fromisoformat(context.partition_key)
        path = metrics_file(sidflow.paths, day)
        if not path.exists():
            missing = g.Gate(f"{path.name} of {asset}[{day}]", None, 0.0, ">=", False)
            return _result(sidflow.paths.reports, day, stage, [missing])
        metrics = json.loads(path.read_text())
        if metrics.get("skipped"):  # e.g. no ranker on a review-only source
            g.record(sidflow.paths.reports, day, stage, [])
            return dg.AssetCheckResult(
                passed=True,
                description=f"no {stage} gate: {metrics['skipped']}",
                metadata={"skipped": metrics["skipped"]},
            )
        return _result(sidflow.paths.reports, day, stage, evaluate(metrics, sidflow.params))

    return gate


def build_gate_checks(
    partitions: dg.PartitionsDefinition, asset_keys: set[dg.AssetKey]
) -> list[dg.AssetChecksDefinition]:
    """A blocking gate check for each gated asset present in the graph."""
    specs = [
        (
            "sid_table",
            "sid",
            lambda wd, d: wd.sid_dir / f"day={d}" / "metrics.json",
            lambda m, p: g.sid_gates(m, p.gates.sid),
            "SID collision rate, utilisation per layer and top-1% exposure share per layer",
        ),
        (
            "retriever_eval",
            "retriever",
            lambda wd, d: wd.retriever_dir(d) / "metrics.json",
            lambda m, p: g.retriever_gates(m, p.gates.retriever, promoted_metrics(p, "retriever")),
            "HR@50/100/200 on all and purchase samples over the floors and within the "
            "tolerance of the promoted model",
        ),
        (
            "ranker_eval",
            "ranker",
            lambda wd, d: wd.ranker_eval_dir(d) / "metrics.json",
            lambda m, p: g.ranker_gates(m, p.gates.ranker),
            "rank AUC over the floor and rank-vs-retrieval AUC gap under the max",
        ),
    ]
    return [
        _check(partitions, asset, stage, path, evaluate, description)
        for asset, stage, path, evaluate, description in specs
        if dg.AssetKey(asset) in asset_keys
    ]
