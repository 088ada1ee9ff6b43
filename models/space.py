"""Vocabularies shared by every model: field value -> id, behaviours and tasks.

A `FeatureSpace` maps the catalogue's and the users' sparse fields to ids (0 = missing or
unseen); the catalogue becomes an item table whose row 0 is padding and row i+1 is item i.
The retriever, the ranker, the alignment and serving all encode through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from models.tokenizer.table import sid_columns

BEHAVIOURS = ["click", "cart", "purchase"]  # engaged event types (exposures are not targets)
ITEM_FIELDS = ["item_id", "seller", "brand", "cat_l1", "cat_l2", "cat_l3"]
USER_FIELDS = ["user_id", "age_bucket", "region"]


def task_names(scenes: list[str]) -> list[str]:
    """Task vocabulary of the Task-Conditioned BOS: behaviour x scene (unirec §3.4)."""
    return [f"{b}/{s}" for b in BEHAVIOURS for s in scenes]


@dataclass
class FeatureSpace:
    """Catalogue and user vocabularies: field value -> id (0 = missing or unseen)."""

    items: pd.DataFrame  # catalogue in item-table order (row i+1 = items.iloc[i])
    vocab: dict[str, dict[str, int]]
    scenes: list[str]

    @classmethod
    def build(cls, items: pd.DataFrame, users: pd.DataFrame, scenes: list[str]) -> FeatureSpace:
        """Vocabularies from the catalogue and the users table."""
        items = items.drop_duplicates("item_id", keep="last").reset_index(drop=True)
        vocab = {}
        for f, frame in [*((f, items) for f in ITEM_FIELDS), *((f, users) for f in USER_FIELDS)]:
            vals = frame[f].dropna().astype(str).unique() if f in frame.columns else []
            vocab[f] = {v: i + 1 for i, v in enumerate(sorted(vals))}
        return cls(items=items, vocab=vocab, scenes=list(scenes))

    @property
    def field_sizes(self) -> dict[str, int]:
        """Embedding-table size of every field (ids 0..n)."""
        return {f: len(v) + 1 for f, v in self.vocab.items()}

    @property
    def item_row(self) -> dict[str, int]:
        """item_id -> item-table row (1-based; 0 is padding)."""
        return self.vocab["item_id"]

    def ids(self, field: str, values: pd.Series | np.ndarray | list) -> np.ndarray:
        """Map raw values of `field` to ids (unknown and null -> 0)."""
        v = self.vocab[field]
        return np.array(
            [v.get(str(x), 0) if x is not None and x == x else 0 for x in values], dtype=np.int64
        )

    def item_fields(self, seq_fields: list[str]) -> torch.Tensor:
        """(N+1, F_s) field ids per item row; row 0 = padding."""
        unknown = [f for f in seq_fields if f not in ITEM_FIELDS]
        if unknown:
            raise ValueError(f"retriever.model.seq_fields: unknown item field(s) {unknown}")
        order = self.items["item_id"].astype(str).map(self.item_row).to_numpy()
        cols = []
        for f in seq_fields:
            col = np.zeros(len(self.items) + 1, np.int64)
            col[order] = self.ids(f, self.items[f]) if f in self.items.columns else 0
            cols.append(col)
        if not cols:
            return torch.zeros((len(self.items) + 1, 0), dtype=torch.long)
        return torch.from_numpy(np.stack(cols, axis=1))

    def item_sids(self, sid_table: pd.DataFrame) -> torch.Tensor:
        """(N+1, L) SID code + 1 per item row (0 = item without SID, or padding)."""
        cols = sid_columns(sid_table)
        out = np.zeros((len(self.items) + 1, len(cols)), np.int64)
        rows = self.ids("item_id", sid_table["item_id"].astype(str))
        keep = rows > 0
        out[rows[keep]] = sid_table.loc[keep, cols].to_numpy(np.int64) + 1
        return torch.from_numpy(out)
