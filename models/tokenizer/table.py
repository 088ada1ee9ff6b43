"""The SID table and its codebooks on disk: what the retriever and serving consume.

A version folder holds
- `sid_table.parquet`: columns exactly item_id, s0..s{L-1}, dedup, version; one row per
  item, sorted by item_id; (s0..s{L-1}, dedup) is unique (SID -> item is one-to-one);
- `codebooks.safetensors`: tensor `codebooks` (L, K, D) float32, and `loads` (L, K)
  float64 exposure load per code; metadata `meta` (JSON: K, L, tau, capacity, C_cap,
  embedding source, version, weights basis).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors import safe_open
from safetensors.numpy import save_file

TABLE_FILE = "sid_table.parquet"
CODEBOOK_FILE = "codebooks.safetensors"


@dataclass
class SidTable:
    """Semantic IDs of a catalogue: codes per item, the dedup level and the codebooks."""

    frame: pd.DataFrame  # item_id, s0..s{L-1}, dedup, version
    codebooks: np.ndarray  # (L, K, D) float32 centres
    loads: np.ndarray  # (L, K) exposure load per code
    meta: dict = field(default_factory=dict)

    @property
    def L(self) -> int:  # noqa: N802 - the paper's name
        """Number of semantic layers."""
        return self.codebooks.shape[0]

    @property
    def K(self) -> int:  # noqa: N802
        """Codes per layer."""
        return self.codebooks.shape[1]

    @property
    def code_columns(self) -> list[str]:
        """['s0', ..., 's{L-1}']."""
        return [f"s{i}" for i in range(self.L)]

    @property
    def codes(self) -> np.ndarray:
        """(N, L) int64 semantic codes in table order."""
        return self.frame[self.code_columns].to_numpy(np.int64)

    @property
    def version(self) -> str:
        """The version every row carries."""
        return str(self.meta.get("version", ""))

    def sid_to_item(self) -> dict[tuple[int, ...], str]:
        """(s0, ..., s{L-1}, dedup) -> item_id (one-to-one; raises if not)."""
        keys = self.frame[[*self.code_columns, "dedup"]].itertuples(index=False, name=None)
        mapping = dict(zip(keys, self.frame["item_id"], strict=True))
        if len(mapping) != len(self.frame):
            raise ValueError("SID table is not one-to-one: repeated (s0.., dedup) rows")
        return mapping

    def save(self, folder: Path) -> Path:
        """Write sid_table.parquet and codebooks.safetensors into `folder`; returns it."""
        folder.mkdir(parents=True, exist_ok=True)
        self.frame.to_parquet(folder / TABLE_FILE, index=False)
        save_file(
            {
                "codebooks": np.ascontiguousarray(self.codebooks, dtype=np.float32),
                "loads": np.ascontiguousarray(self.loads, dtype=np.float64),
            },
            str(folder / CODEBOOK_FILE),
            metadata={"meta": json.dumps(self.meta, sort_keys=True, default=str)},
        )
        return folder


def table_frame(
    item_ids: np.ndarray, codes: np.ndarray, dedup: np.ndarray, version: str
) -> pd.DataFrame:
    """The canonical frame: item_id, s0..s{L-1}, dedup, version, sorted by item_id."""
    frame = pd.DataFrame({"item_id": pd.Series(item_ids, dtype=object).astype(str)})
    for i in range(codes.shape[1]):
        frame[f"s{i}"] = codes[:, i].astype(np.int64)
    frame["dedup"] = dedup.astype(np.int64)
    frame["version"] = version
    return frame.sort_values("item_id", kind="stable").reset_index(drop=True)


def load_sid_table(path: Path | str) -> SidTable:
    """Load a SID version (its folder, its `artefacts/` or sid_table.parquet), validated."""
    path = Path(path)
    folder = path.parent if path.suffix == ".parquet" else path
    if not (folder / TABLE_FILE).exists() and (folder / "artefacts" / TABLE_FILE).exists():
        folder = folder / "artefacts"  # a stage output folder (stage.py layout)
    table_path, books_path = folder / TABLE_FILE, folder / CODEBOOK_FILE
    for p in (table_path, books_path):
        if not p.exists():
            raise FileNotFoundError(f"SID version at {folder} lacks {p.name}")
    frame = pd.read_parquet(table_path)
    with safe_open(str(books_path), framework="numpy") as f:
        codebooks, loads = f.get_tensor("codebooks"), f.get_tensor("loads")
        meta = json.loads(f.metadata()["meta"])
    n_layers = codebooks.shape[0]
    expected = ["item_id", *[f"s{i}" for i in range(n_layers)], "dedup", "version"]
    if list(frame.columns) != expected:
        raise ValueError(f"{table_path}: columns {list(frame.columns)}, expected {expected}")
    for col in expected[1:-1]:
        bad = frame[col].isna() | (frame[col] < 0)
        if col != "dedup":
            bad |= frame[col] >= codebooks.shape[1]
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{table_path}: column {col} out of range at row {row}")
    table = SidTable(frame, codebooks, loads, meta)
    table.sid_to_item()  # one-to-one check
    return table


def sid_columns(sid_table: pd.DataFrame) -> list[str]:
    """The SID layer columns s0..s{L-1} of a SID table, in order (validated)."""
    cols = sorted(
        (c for c in sid_table.columns if c[:1] == "s" and c[1:].isdigit()), key=lambda c: int(c[1:])
    )
    if not cols or cols != [f"s{i}" for i in range(len(cols))]:
        raise ValueError(f"SID table needs columns s0..s{{L-1}}; got {list(sid_table.columns)}")
    for c in ["item_id", *cols]:
        if sid_table[c].isna().any():
            row = int(np.flatnonzero(sid_table[c].isna().to_numpy())[0])
            raise ValueError(f"SID table column '{c}' is null at row {row}")
    return cols
