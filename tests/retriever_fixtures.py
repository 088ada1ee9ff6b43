"""Small synthetic catalogues, SID tables and batches for the retriever tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from models.retriever.build import RetrieverParts, build_retriever
from sidflow.config import RetrieverModelParams

SCENES = ["feed", "search"]


def catalogue(n: int = 60, k: int = 6, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items with categories/brand/seller and a SID table (L=3, codebook k) with dedup."""
    rng = np.random.default_rng(seed)
    l2 = rng.integers(0, 3, n)
    items = pd.DataFrame(
        {
            "item_id": [f"i{i:03d}" for i in range(n)],
            "cat_l1": "c",
            "cat_l2": [f"c{a}" for a in l2],
            "cat_l3": [
                f"c{a}-{b}" if b < 3 else None
                for a, b in zip(l2, rng.integers(0, 4, n), strict=True)
            ],
            "brand": [f"b{b}" for b in rng.integers(0, 5, n)],
            "seller": [f"s{b}" for b in rng.integers(0, 4, n)],
        }
    )
    sid = pd.DataFrame({"item_id": items["item_id"]})
    for j in range(3):
        sid[f"s{j}"] = rng.integers(0, k, n)
    sid["dedup"] = sid.groupby(["s0", "s1", "s2"]).cumcount()
    sid["version"] = "test"
    return items, sid


def users(n: int = 10) -> pd.DataFrame:
    """Users with profile fields."""
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "age_bucket": ["18-24", "25-34"] * (n // 2),
            "region": ["east"] * n,
        }
    )


def tiny_params(**update) -> RetrieverModelParams:
    """A very small UniRec configuration (fast on CPU)."""
    base = {
        "d_model": 16,
        "n_heads": 2,
        "n_layers": 2,
        "n_experts": 2,
        "ffn_mult": 1.0,
        "d_field": 4,
        "d_prefix": 4,
        "d_hash": 4,
        "history_len": 5,
        "mm_len": 3,
        "dropout": 0.0,
    }
    return RetrieverModelParams(**{**base, **update})


def parts(n_items: int = 60, k: int = 6, seed: int = 0, **update) -> RetrieverParts:
    """Retriever parts for the synthetic catalogue."""
    torch.manual_seed(seed)
    items, sid = catalogue(n_items, k, seed)
    return build_retriever(tiny_params(**update), items, users(), sid, SCENES, k)


def batch(p: RetrieverParts, b: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random request batch with targets drawn from the catalogue."""
    g = torch.Generator().manual_seed(seed)
    n = len(p.space.items)
    t = p.model.cfg.model.history_len
    hist = torch.randint(0, n + 1, (b, t), generator=g)
    hist[0, :2] = 0  # some padding
    rows = torch.randint(0, len(p.paths), (b,), generator=g)
    return {
        "profile": torch.randint(0, 2, (b, len(p.model.cfg.model.profile_fields)), generator=g),
        "hist": hist,
        "hist_type": torch.where(hist > 0, torch.randint(1, 4, (b, t), generator=g), 0),
        "task": torch.randint(0, len(p.model.cfg.tasks), (b,), generator=g),
        "target": torch.from_numpy(p.paths.codes[rows.numpy()]),
        "item_row": rows,
        "weight": torch.ones(b),
    }


def one_thread():
    """Generator for an autouse fixture: tiny models run fastest (and steadiest on a
    shared 2-core machine) on one thread; the previous setting is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
