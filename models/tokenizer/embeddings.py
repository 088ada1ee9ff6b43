"""Item embeddings for the quantiser: semantic, collaborative or fused (the `sid.embedding` setting).

- semantic: MiniLM text vectors (semantic.py), 384-d.
- collaborative: SASRec item table (collaborative.py); items without engagements take
  the mean vector of their finest category that has engaged items.
- fused (default): UNGER §3.3 (fusion.py), normalise(c_i + MAL(s_i)) for items with
  engagements, MAL(s_i) alone for items without (cold start: coded from content).
  Falls back to semantic when there are no engagement sequences at all.

Trained encoders are cached under the working folder by a key of (source, data
fingerprint, encoder settings, seed, warm start), so e.g. a `sid.tau` experiment reuses them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as load_np
from safetensors.numpy import save_file as save_np
from safetensors.torch import load_file, save_file

from models.tokenizer.data import TokenizerData
from models.tokenizer.fusion import ItemEncoder, train_item_encoder
from models.tokenizer.semantic import semantic_embeddings
from sidflow.atomic import staged_folder
from sidflow.config import SidEncoderParams, SidParams


@dataclass
class ItemEmbeddings:
    """Row i embeds item_ids[i]; vectors are L2-normalised float32."""

    item_ids: np.ndarray  # (N,)
    vectors: np.ndarray  # (N, D)
    source: str  # semantic | collaborative | fused
    content_only: np.ndarray  # (N,) True where no engagement informed the vector
    history: dict = field(default_factory=dict)  # encoder training losses


@dataclass
class EncoderArtefact:
    """A trained item encoder and the item vocabulary of its rows (for warm starts, cold items)."""

    state: dict[str, torch.Tensor]
    item_ids: np.ndarray  # (N,) row order of the item table
    meta: dict  # source, encoder settings, semantic_dim

    def save(self, folder: Path) -> None:
        """encoder.safetensors (+ JSON metadata) and encoder_items.parquet in `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in self.state.items()},
            folder / "encoder.safetensors",
            metadata={"meta": json.dumps(self.meta)},
        )
        pd.DataFrame({"item_id": self.item_ids}).to_parquet(folder / "encoder_items.parquet")

    @classmethod
    def load(cls, folder: Path) -> EncoderArtefact | None:
        """The encoder saved in `folder`, or None if there is none (semantic source)."""
        path = folder / "encoder.safetensors"
        if not path.exists():
            return None

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["meta"])
        ids = pd.read_parquet(folder / "encoder_items.parquet")["item_id"].to_numpy()
        return cls(load_file(str(path)), ids, meta)

    @property
    def digest(self) -> str:
        """Content hash (a cache-key ingredient)."""
        h = hashlib.sha1(json.dumps(self.meta, sort_keys=True).encode())
        h.update("\n".join(map(str, self.item_ids)).encode())
        for k in sorted(self.state):
            h.update(self.state[k].numpy().tobytes())
        return h.hexdigest()

    def model(self) -> ItemEncoder:
        """Rebuild the torch module."""
        cfg = SidEncoderParams(**self.meta["encoder"])
        enc = ItemEncoder(len(self.item_ids), cfg, self.meta.get("semantic_dim"))
        enc.load_state_dict(self.state)
        return enc.eval()


def compute_embeddings(
    data: TokenizerData,
    sid: SidParams,
    cache_dir: Path,
    warm: EncoderArtefact | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[ItemEmbeddings, EncoderArtefact | None]:
    """Embeddings of every catalogue item of `data` for `sid.embedding` (see module doc)."""
    source = sid.embedding
    engaged = np.zeros(len(data.items), dtype=bool)
    for seq in data.sequences:
        if len(seq) >= 2:
            engaged[seq] = True
    if source == "fused" and not engaged.any():
        source = "semantic"  # nothing to fuse with: the default degrades to text
    semantic = None
    if source in ("semantic", "fused"):
        semantic = semantic_embeddings(data.items, cache_dir / "minilm.parquet", device, progress)
    if source == "semantic":
        return ItemEmbeddings(data.item_ids, semantic, source, np.ones(len(semantic), bool)), None
    if not engaged.any():
        raise ValueError("sid.embedding=collaborative needs engagement sequences; found none")

    enc_cfg = sid.encoder
    key = hashlib.sha1(
        json.dumps(
            [
                source,
                data.fingerprint,
                enc_cfg.model_dump(),
                sid.seed,
                warm.digest if warm else "fresh",
            ]
        ).encode()
    ).hexdigest()[:16]
    cached = cache_dir / f"encoder-{key}"
    if (cached / "embeddings.safetensors").exists():
        stored = load_np(str(cached / "embeddings.safetensors"))
        artefact = EncoderArtefact.load(cached)
        history = json.loads((cached / "history.json").read_text())
        return ItemEmbeddings(
            data.item_ids, stored["vectors"], source, stored["content_only"].astype(bool), history
        ), artefact

    init = None
    if warm is not None:
        old = pd.Index(warm.item_ids).get_indexer(data.item_ids)  # -1 for new items
        init = (warm.state, old)
    epochs = enc_cfg.warm_epochs if warm is not None else enc_cfg.epochs
    encoder, history = train_item_encoder(
        data.sequences, len(data.items), semantic, enc_cfg, epochs, sid.seed, init, device, progress
    )
    collab = encoder.collaborative().numpy()
    if source == "fused":
        adapted = encoder.adapted(torch.as_tensor(semantic)).numpy()
        fused = collab + adapted
        vectors = np.where(
            engaged[:, None], fused / np.linalg.norm(fused, axis=1, keepdims=True), adapted
        )
    else:
        vectors = category_fallback(data.items, collab, engaged)
    meta = {
        "source": source,
        "encoder": enc_cfg.model_dump(),
        "semantic_dim": None if semantic is None else int(semantic.shape[1]),
    }
    artefact = EncoderArtefact(encoder.state_dict(), data.item_ids, meta)
    out = ItemEmbeddings(data.item_ids, vectors.astype(np.float32), source, ~engaged, history)
    # Staged and renamed: a run killed mid-write leaves nothing the next run takes for a hit.
    with staged_folder(cached) as staging:
        artefact.save(staging)
        save_np(
            {"vectors": out.vectors, "content_only": out.content_only.astype(np.uint8)},
            str(staging / "embeddings.safetensors"),
        )
        (staging / "history.json").write_text(json.dumps(history))
    return out, artefact


def embed_from_content(
    catalogue: pd.DataFrame,
    new: np.ndarray,
    source: str,
    artefact: EncoderArtefact | None,
    known_vectors: np.ndarray | None,
    cache_dir: Path,
    device: str = "cpu",
) -> np.ndarray:
    """(n_new, D) vectors for the catalogue rows where `new` is True, from content alone.

    Incremental mode (cold start): semantic -> MiniLM; fused -> MAL(MiniLM) through the
    previous encoder; collaborative -> mean vector of the known items in the same finest
    category (`known_vectors`: (N, D) rows aligned with `catalogue`, valid where not new).
    """
    if source == "collaborative":
        if known_vectors is None:
            raise ValueError("collaborative cold start needs the previous version's embeddings")
        return category_fallback(catalogue, known_vectors, ~new)[new]
    semantic = semantic_embeddings(catalogue[new], cache_dir / "minilm.parquet", device)
    if source == "semantic":
        return semantic
    if artefact is None:
        raise ValueError("fused cold start needs the previous version's encoder")
    return artefact.model().adapted(torch.as_tensor(semantic)).numpy().astype(np.float32)


def category_fallback(items: pd.DataFrame, vectors: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill rows where `known` is False with the normalised mean known vector of the finest
    shared category (cat_l3, then cat_l2, cat_l1, then all items)."""
    out = vectors.astype(np.float32).copy()
    todo = ~known
    for col in ("cat_l3", "cat_l2", "cat_l1", None):
        if not todo.any():
            break
        keys = items[col].fillna("<none>").to_numpy() if col else np.zeros(len(items), int)
        frame = pd.DataFrame(vectors[known]).groupby(keys[known]).mean()
        rows = np.flatnonzero(todo & np.isin(keys, frame.index))
        if len(rows):
            out[rows] = frame.loc[keys[rows]].to_numpy()
            todo[rows] = False
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1)
