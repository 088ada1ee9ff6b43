"""UniRec ablations and the TIGER-like baseline as settings of the same retriever.

Each variant switches parts of `retriever.model` off (unirec Tables 2-3):
- no_coa: direct SID decoding (no Chain-of-Attribute)
- no_task_bos: one fixed BOS for every task (the MMoE keeps its gate per task)
- no_task_gate: one MMoE gate shared by every task (eq. 15; the BOS stays per task)
- no_content_summary: rank heads without c_t
- no_capacity_sids: plain RQ-KMeans SIDs instead of capacity-constrained ones
- tiger: TIGER-like (Rajput et al. 2023): fixed BOS, no attributes, no Content Summary,
  plain RQ-KMeans SIDs, and a history made of SID tokens only (no item-id, seller,
  brand or profile features)
"""

from __future__ import annotations

from sidflow.config import RetrieverModelParams

VARIANTS: dict[str, dict] = {
    "unirec": {},
    "no_coa": {"chain": []},
    "no_task_bos": {"task_bos": False},
    "no_task_gate": {"task_gate": False},
    "no_content_summary": {"content_summary": False},
    "no_capacity_sids": {"capacity_sids": False},
    "tiger": {
        "chain": [],
        "task_bos": False,
        "task_gate": False,
        "content_summary": False,
        "capacity_sids": False,
        "seq_fields": [],
        "profile_fields": [],
    },
}
ABLATIONS = [
    "unirec",
    "no_coa",
    "no_task_bos",
    "no_task_gate",
    "no_content_summary",
    "no_capacity_sids",
]


def variant(params: RetrieverModelParams, name: str) -> RetrieverModelParams:
    """`params` with variant `name` applied (raises naming the unknown variant)."""
    if name not in VARIANTS:
        raise KeyError(f"unknown retriever variant '{name}'; known: {sorted(VARIANTS)}")
    return params.model_copy(update=VARIANTS[name])
