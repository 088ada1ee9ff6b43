"""Sample table -> ranker tensors, and the vocabularies and scalings that serving reuses.

Counts and money are log1p-transformed, then every dense column is standardised with the
training rows' mean and standard deviation; missing values (no feature row yet) become 0,
the training mean. Everything is kept in `RankerEncoding` (JSON), so serving encodes the
online features of a request exactly as training encoded the offline ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from models.ranker.samples import FeatureGroups
from models.space import FeatureSpace

ITEM_FIELDS = ["item_id", "seller", "brand", "cat_l1", "cat_l2", "cat_l3"]
USER_FIELDS = ["user_id", "age_bucket", "region"]
RATE_MARKERS = ("_ctr_", "_cvr_", "days_since")


def _log_scaled(name: str) -> bool:
    return not any(m in name for m in RATE_MARKERS)


@dataclass
class RankerEncoding:
    """Vocabularies, feature columns and their scaling (fitted on training rows)."""

    vocab: dict[str, dict[str, int]]  # field -> value -> id (0 = missing / unseen)
    scenes: list[str]
    user_cols: list[str]
    cross_cols: list[str]
    mean: dict[str, float]
    std: dict[str, float]

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, space: FeatureSpace, groups: FeatureGroups, use_u2i: bool = True
    ) -> RankerEncoding:
        """Vocabularies from `space`, scalings from the training rows of `frame`."""
        cross = groups.cross if use_u2i else [c for c in groups.cross if c not in groups.u2i]
        train = frame[~frame["eval"].to_numpy()] if "eval" in frame else frame
        mean, std = {}, {}
        for c in groups.user + cross:
            x = _transform(c, train[c].to_numpy(float))
            m = float(np.nanmean(x)) if np.isfinite(x).any() else 0.0
            s = float(np.nanstd(x)) if np.isfinite(x).any() else 1.0
            mean[c], std[c] = m, s if s > 1e-6 else 1.0
        return cls(
            vocab=space.vocab,
            scenes=list(space.scenes),
            user_cols=list(groups.user),
            cross_cols=cross,
            mean=mean,
            std=std,
        )

    def to_json(self) -> str:
        """Serialise (config.json)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, raw: dict) -> RankerEncoding:
        """Inverse of `to_json` (after json.loads)."""
        return cls(**raw)

    def ids(self, field: str, values) -> np.ndarray:  # noqa: ANN001
        """Raw values -> ids (unknown and null -> 0)."""
        v = self.vocab[field]
        return np.array(
            [v.get(str(x), 0) if x is not None and x == x else 0 for x in values], np.int64
        )

    def scene_ids(self, scenes) -> np.ndarray:  # noqa: ANN001
        """Scene names -> ids (0 = unknown scene)."""
        index = {s: i + 1 for i, s in enumerate(self.scenes)}
        return np.array([index.get(str(s), 0) for s in scenes], np.int64)

    def dense(self, frame: pd.DataFrame, cols: list[str]) -> np.ndarray:
        """Standardised columns (n, len(cols)); absent column or value -> 0.

        One (n, C) array for all columns (serving calls this per request): counts
        log1p-scaled, then (x - mean) / std, NaN and inf -> 0.
        """
        x = frame.reindex(columns=cols).to_numpy(np.float64)  # absent column -> NaN
        log = np.array([_log_scaled(c) for c in cols], bool)
        x[:, log] = np.log1p(np.clip(x[:, log], 0, None))
        mean = np.array([self.mean[c] for c in cols])
        std = np.array([self.std[c] for c in cols])
        out = np.nan_to_num((x - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)
        return out.astype(np.float32)

    def history_rows(self, histories, history_len: int) -> np.ndarray:  # noqa: ANN001
        """Lists of item ids -> (n, T) item rows, most recent last, 0 = padding."""
        out = np.zeros((len(histories), history_len), np.int64)
        for i, h in enumerate(histories):
            ids = self.ids("item_id", list(h)[-history_len:])
            if len(ids):
                out[i, -len(ids) :] = ids
        return out

    def profile(self, user_ids, profiles: pd.DataFrame | None) -> np.ndarray:  # noqa: ANN001
        """(n, len(USER_FIELDS)) ids for user_id, age_bucket, region."""
        user_ids = list(user_ids)
        cols = [self.ids("user_id", user_ids)]
        for f in USER_FIELDS[1:]:
            vals = profiles[f].reindex(user_ids) if profiles is not None and f in profiles else None
            cols.append(
                self.ids(f, vals) if vals is not None else np.zeros(len(user_ids), np.int64)
            )
        return np.stack(cols, 1)

    def field_sizes(self) -> dict[str, int]:
        """Embedding-table sizes: item and user fields, plus scene."""
        return {f: len(v) + 1 for f, v in self.vocab.items()} | {"scene": len(self.scenes) + 1}


def _transform(name: str, x: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(x, 0, None)) if _log_scaled(name) else x


def encode_frame(
    frame: pd.DataFrame, enc: RankerEncoding, users: pd.DataFrame, history_len: int
) -> dict[str, torch.Tensor]:
    """Tensors of a sample table: profile, scene, user_dense, hist, item, cross, label (click),
    label_cart / label_purchase (the other objectives' labels, where the table has them), keys."""
    profiles = users.drop_duplicates("user_id").set_index("user_id")
    labels = {
        f"label_{name}": torch.from_numpy(frame[name].to_numpy(np.float32))
        for name in ("cart", "purchase")
        if name in frame
    }
    return labels | {
        "profile": torch.from_numpy(enc.profile(frame["user_id"], profiles)),
        "scene": torch.from_numpy(enc.scene_ids(frame["scene"])),
        "user_dense": torch.from_numpy(enc.dense(frame, enc.user_cols)),
        "hist": torch.from_numpy(enc.history_rows(frame["history"], history_len)),
        "item": torch.from_numpy(enc.ids("item_id", frame["item_id"])),
        "cross": torch.from_numpy(enc.dense(frame, enc.cross_cols)),
        "label": torch.from_numpy(frame["click"].to_numpy(np.float32)),
        "user_key": torch.from_numpy(pd.factorize(frame["user_id"])[0].astype(np.int64)),
        "request_key": torch.from_numpy(pd.factorize(frame["request_id"])[0].astype(np.int64)),
    }


def item_tables(space: FeatureSpace, sid_frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """(N+1, F) item field ids and (N+1, L) SID codes + 1 in the vocabulary's row order."""
    return space.item_fields(ITEM_FIELDS), space.item_sids(sid_frame)
