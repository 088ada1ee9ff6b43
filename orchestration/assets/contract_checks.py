"""A contract report in Dagster: asset metadata, the blocking data gate and the warning checks.

Every check names the files; the gate's reason gives the share and the limit; quarantined rows
are listed with file, row (line in a text file), column and rule.
"""

import dagster as dg
import pandas as pd

from data_contracts.report import ContractReport
from sidflow.config import ContractParams


def preview(df: pd.DataFrame, n: int = 8) -> dg.MetadataValue:
    """The first rows as a Markdown table (the asset's preview in the Dagster UI)."""
    return dg.MetadataValue.md(df.head(n).to_markdown(index=False) if len(df) else "_no rows_")


def _md_table(rows: list[dict], columns: list[str], empty: str) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md(empty)
    frame = pd.DataFrame(rows)[columns].fillna("")
    return dg.MetadataValue.md(frame.to_markdown(index=False))


def contract_metadata(report: ContractReport, limits: ContractParams) -> dict:
    """Metadata shared by every contract-validated asset."""
    s = report.summary()
    rules = [{"rule": r, "rows": n} for r, n in report.failed_rules.items()]
    warns = [{"warning (rows kept)": r, "rows": n} for r, n in report.warnings.items()]
    batches = [
        {**b, "file": b["file"].rsplit("/", 1)[-1], "main": "source" if b["main"] else ""}
        for b in s["batches"]
    ]
    md = {
        "rows_in": s["rows_in"],
        "valid_rows": s["valid_rows"],
        "quarantined_rows": s["quarantined_rows"],
        "quarantine_fraction": s["quarantine_fraction"],
        "gate": s["gate"],
        "batches": _md_table(
            batches, ["file", "main", "rows", "bad_rows", "status", "rule", "reason"], "_no batch_"
        ),
        "failed_rules": _md_table(rules, ["rule", "rows"], "_every rule passed_"),
        "warnings": _md_table(warns, ["warning (rows kept)", "rows"], "_none_"),
        "quarantined": _md_table(
            report.examples(limits.examples),
            ["file", "row", "line", "column", "rule", "reason"],
            "_no row quarantined_",
        ),
    }
    if report.references:
        md["checked_against"] = dg.MetadataValue.json(report.references)
    return md


def contract_check(
    name: str, report: ContractReport, limits: ContractParams, also_failed: list[str] = ()
) -> dg.AssetCheckResult:
    """The blocking data gate: the source's batch accepted and enough good rows (and none of
    `also_failed`, the gates of other tables loaded with it)."""
    main = next((b for b in report.batches if b.main), None)
    reason = "; ".join([*also_failed, report.gate.message])
    return dg.AssetCheckResult(
        check_name=name,
        passed=report.gate.passed and not also_failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=reason,
        metadata={
            "reason": reason,
            "source_batch": main.file if main else "none landed",
            "source_batch_quarantine_fraction": (main.fraction or 0.0) if main else 0.0,
            "max_quarantine_fraction": limits.max_quarantine_fraction,
            "valid_rows": len(report.valid),
            "min_valid_rows": limits.min_valid_rows,
            "batches": dg.MetadataValue.json([b.message for b in report.batches]),
            "quarantined": dg.MetadataValue.json(report.examples(limits.examples)),
        },
    )


def batches_check(report: ContractReport) -> dg.AssetCheckResult:
    """Warns, naming each file, when a batch was quarantined or rejected whole."""
    aside = report.rejected_batches
    return dg.AssetCheckResult(
        check_name="every_batch_accepted",
        passed=not aside,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(b.message for b in aside) or "every batch accepted",
        metadata={
            "set_aside": dg.MetadataValue.json([b.to_json() for b in aside]),
            "accepted": dg.MetadataValue.json(
                [b.file for b in report.batches if b.status == "accepted"]
            ),
        },
    )


def rules_check(report: ContractReport, limits: ContractParams) -> dg.AssetCheckResult:
    """Warns on any quarantined row or warning-level rule (orphan engagements, kept)."""
    broken = {**report.failed_rules, **{f"{r} (kept)": n for r, n in report.warnings.items()}}
    return dg.AssetCheckResult(
        check_name="every_rule_passed",
        passed=not broken,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(f"{r}: {n}" for r, n in broken.items()) or "every rule passed",
        metadata={
            "failed_rules": dg.MetadataValue.json(report.failed_rules),
            "warnings": dg.MetadataValue.json(report.warnings),
            "quarantined": dg.MetadataValue.json(report.examples(limits.examples)),
        },
    )
