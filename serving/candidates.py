"""The near-line candidates table of a bundle, as serving reads it (the step: serving/nearline.py).

The beam search is most of a request's CPU time (benchmarks/serve.py `cpu_breakdown`), and
for a user who sends no history of their own its input is fixed for the whole day: the
bundle's history of the user, the user's profile and the scene's Task-Conditioned BOS
(unirec §3.4). So the bundle step runs it once per (active user, scene) and stores the result
in the bundle as `candidates.parquet`:

| column | type | meaning |
|---|---|---|
| user_id, scene | string | the request it answers |
| input_key | string | digest of the model input it was computed from (`input_keys`) |
| rows | list<int32> | the beam's items (rows of the bundle's item paths), best first, -1 padding |
| logp | list<float32> | their path log-probabilities (after the item-head re-rank, as served) |

plus the beam width in the table's metadata. A request whose model input has the same digest
(same user, scene and history, and the same width) is answered from the table; any other
request (a history of its own, an unknown user, a larger k than the width) runs the beam
search live. `Recommendation.candidates` says which path served it ("nearline" / "live").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

FILE = "candidates.parquet"
WIDTH_KEY = b"sidflow.beam_width"
SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("scene", pa.string()),
        ("input_key", pa.string()),
        ("rows", pa.list_(pa.int32())),
        ("logp", pa.list_(pa.float32())),
    ]
)


def input_keys(batch: dict[str, torch.Tensor]) -> list[str]:
    """One digest per request of everything the beam search reads (profile, hist, hist_type,
    task rows of `Recommender._encode`): equal digests, equal beam input."""
    parts = [batch[k].numpy() for k in ("profile", "hist", "hist_type", "task")]
    n = parts[0].shape[0]
    out = []
    for i in range(n):
        h = hashlib.blake2b(digest_size=12)
        for p in parts:
            h.update(np.ascontiguousarray(p[i]).tobytes())
        out.append(h.hexdigest())
    return out


def table(cols: dict[str, list], width: int) -> pa.Table:
    """The candidates table of `SCHEMA` columns, with the beam width in its metadata."""
    out = pa.table(cols, schema=SCHEMA)
    return out.replace_schema_metadata({WIDTH_KEY: str(width).encode()})


def write(folder: Path, table: pa.Table) -> Path:
    """`candidates.parquet` in a (staged) bundle folder."""
    path = Path(folder) / FILE
    pq.write_table(table, path)
    return path


class CandidateTable:
    """The bundle's precomputed candidates, looked up by (user, scene, input digest)."""

    def __init__(self, table: pa.Table):
        meta = table.schema.metadata or {}
        self.width = int(meta.get(WIDTH_KEY, b"0"))
        users = table.column("user_id").to_pylist()
        scenes = table.column("scene").to_pylist()
        keys = table.column("input_key").to_pylist()
        rows = table.column("rows").to_pylist()
        logp = table.column("logp").to_pylist()
        self._by = {
            (u, s): (k, np.asarray(r, np.int64), np.asarray(lp, np.float32))
            for u, s, k, r, lp in zip(users, scenes, keys, rows, logp, strict=True)
        }

    @classmethod
    def load(cls, folder: Path) -> CandidateTable | None:
        """The table of a bundle folder, or None when the bundle has none."""
        path = Path(folder) / FILE
        return cls(pq.read_table(path)) if path.exists() else None

    def __len__(self) -> int:
        return len(self._by)

    def get(
        self, user_id: str, scene: str, key: str, width: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows (W,), logp (W,)) precomputed for exactly this input and width, else None."""
        hit = self._by.get((user_id, scene))
        if hit is None or hit[0] != key or width != self.width:
            return None
        return hit[1], hit[2]
