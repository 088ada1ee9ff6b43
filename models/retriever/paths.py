"""Decoding paths: each item as (attributes..., s0..s{L-1}[, dedup]) token ids (unirec §3.3).

The path of an item is what the retriever generates: m Chain-of-Attribute tokens
(e.g. cat_l2 -> cat_l3), then the L Semantic ID tokens, then the dedup index when
several items share one SID. Every path position has its own vocabulary; attribute
vocabularies reserve id 0 for "missing" (e.g. Amazon items without an L3 category).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.tokenizer.table import sid_columns

MISSING = "<none>"


@dataclass
class PathSpec:
    """Names and vocabulary sizes of the decoding path positions."""

    fields: list[str]  # e.g. ["cat_l2", "cat_l3", "s0", "s1", "s2", "dedup"]
    vocab_sizes: list[int]
    chain: list[str]  # the attribute fields (prefix of `fields`)
    attr_values: dict[str, list[str]] = field(default_factory=dict)  # id -> value per attribute

    @property
    def n_steps(self) -> int:
        """Number of decoding steps m + L (+1 with dedup)."""
        return len(self.fields)

    def position(self, name: str) -> int:
        """Path position of a field name (raises naming the unknown field)."""
        if name not in self.fields:
            raise KeyError(f"path field '{name}' is not one of {self.fields}")
        return self.fields.index(name)

    def to_json(self) -> str:
        """Serialise (saved beside checkpoints)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PathSpec:
        """Inverse of `to_json`."""
        return cls(**json.loads(text))


@dataclass
class ItemPaths:
    """The catalogue's decoding paths: `codes[i]` is the path of `item_ids[i]`."""

    spec: PathSpec
    item_ids: np.ndarray  # (N,) object: item ids in row order
    codes: np.ndarray  # (N, P) int64

    def __post_init__(self) -> None:
        self._row = {item: i for i, item in enumerate(self.item_ids)}

    def __len__(self) -> int:
        return len(self.item_ids)

    def rows(self, item_ids: list | np.ndarray) -> np.ndarray:
        """Row index of each item id; -1 for items without a path."""
        return np.array([self._row.get(i, -1) for i in item_ids], dtype=np.int64)


def build_item_paths(
    items: pd.DataFrame,
    sid_table: pd.DataFrame,
    chain: list[str],
    codebook_size: int | None = None,
) -> ItemPaths:
    """Join the catalogue's attributes with the SID table into decoding paths.

    Items without a SID are left out (they cannot be generated). A dedup step is
    appended when some SIDs are shared (dedup > 0 somewhere), so every path is unique.
    """
    cols = sid_columns(sid_table)
    missing_attr = [a for a in chain if a not in items.columns]
    if missing_attr:
        raise ValueError(f"items table lacks chain attribute(s) {missing_attr}")
    sids = sid_table.drop_duplicates("item_id").set_index("item_id")
    cat = items.drop_duplicates("item_id", keep="last").set_index("item_id")
    item_ids = np.array([i for i in sids.index if i in cat.index], dtype=object)
    if len(item_ids) == 0:
        raise ValueError("no item of the SID table is in the items table")
    sid_codes = sids.loc[item_ids, cols].to_numpy(np.int64)
    if (sid_codes < 0).any():
        raise ValueError("SID table holds negative codes")
    k = codebook_size or int(sid_codes.max()) + 1
    if sid_codes.max() >= k:
        raise ValueError(f"SID code {int(sid_codes.max())} >= codebook size {k}")
    dedup = (
        sids.loc[item_ids, "dedup"].to_numpy(np.int64)
        if "dedup" in sids.columns
        else np.zeros(len(item_ids), np.int64)
    )
    attr_values, attr_codes = {}, []
    for a in chain:
        vals = cat.loc[item_ids, a].astype(object).where(lambda s: s.notna(), MISSING)
        uniq = [MISSING] + sorted(set(vals) - {MISSING})
        index = {v: i for i, v in enumerate(uniq)}
        attr_values[a] = uniq
        attr_codes.append(vals.map(index).to_numpy(np.int64))
    parts = [*attr_codes, *sid_codes.T]
    fields = [*chain, *cols]
    sizes = [len(attr_values[a]) for a in chain] + [k] * len(cols)
    if dedup.max() > 0:
        parts.append(dedup)
        fields.append("dedup")
        sizes.append(int(dedup.max()) + 1)
    codes = np.stack(parts, axis=1)
    _, first, counts = np.unique(codes, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = item_ids[first[counts > 1][0]]
        raise ValueError(f"two items share one full path (SID + dedup), e.g. item {dup}")
    spec = PathSpec(fields=fields, vocab_sizes=sizes, chain=list(chain), attr_values=attr_values)
    return ItemPaths(spec=spec, item_ids=item_ids, codes=codes)


def save_item_paths(paths: ItemPaths, path: Path) -> Path:
    """The decoding path of every item as parquet (item_id + one column per path field)."""
    frame = pd.DataFrame(paths.codes, columns=paths.spec.fields)
    frame.insert(0, "item_id", paths.item_ids.astype(str))
    frame.to_parquet(path, index=False)
    return path


def load_item_paths(path: Path, spec: PathSpec) -> ItemPaths:
    """Inverse of `save_item_paths` (the spec comes from the checkpoint config)."""
    frame = pd.read_parquet(path)
    if list(frame.columns) != ["item_id", *spec.fields]:
        raise ValueError(f"{path}: columns {list(frame.columns)} do not match {spec.fields}")
    return ItemPaths(spec, frame["item_id"].to_numpy(object), frame[spec.fields].to_numpy())
