"""Semantic ID tokenizer: item embeddings and capacity-constrained residual k-means (UniRec §3.2).

Public API (for the retriever and serving):

- `build_sids(embeddings, weights, K, L, tau, capacity=True, seed=0, item_ids=None) -> SidTable`
  quantise (N, D) embeddings; capacity=False is plain RQ-KMeans (TIGER-like baseline).
- `load_sid_table(path) -> SidTable`: a version folder (or its sid_table.parquet).
- `SidTable.frame`: item_id, s0..s{L-1}, dedup, version; `.codebooks` (L, K, D);
  `.sid_to_item()` the one-to-one serving map; `.save(folder)`.
- `rq_kmeans_reference(x, w, RQConfig(...))` and the fast
  `models.tokenizer.rq_kmeans.rq_kmeans(x, w, RQConfig(...))`: the algorithm itself.
- `models.tokenizer.stage.run_sid_stage(params, data, out_dir, ...)`: the pipeline stage
  behind `sidflow sid build`, the DVC stages and the Dagster asset `sid_table`.
- `models.tokenizer.versions`: the daily versions in DVC (add, push, checkout).

Modules: rq_common (protocol), rq_reference (plain loops), rq_kmeans (torch), dedup,
table, sids, incremental, metrics, plots, data, weights, semantic, collaborative,
fusion, embeddings, dvc_hash, stage, versions.
"""

import importlib

# name -> module, imported on first use so that `sidflow --help` does not import torch.
# (`rq_kmeans` is not re-exported: the submodule of that name would shadow it.)
_EXPORTS = {
    "RQConfig": "models.tokenizer.rq_common",
    "RQResult": "models.tokenizer.rq_common",
    "SidTable": "models.tokenizer.table",
    "build_sids": "models.tokenizer.sids",
    "load_sid_table": "models.tokenizer.table",
    "rq_kmeans_reference": "models.tokenizer.rq_reference",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models.tokenizer' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
