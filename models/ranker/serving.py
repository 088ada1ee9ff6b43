"""The ranker as serving uses it: user side once per request, then every candidate (MaRI).

With the ranker's `mari` setting (`ranker.mari`, saved in its config.json) `score` also takes
the user blocks of the Mixer's first fused matmuls once per request and scores the candidates
through the item blocks only (`DIGRanker.mari_user`, related-abstracts.txt: MaRI); off, the
user side is broadcast to every candidate and the full matmuls run per candidate.

`serving.recommender.Recommender` loads a bundle's `ranker/` folder with `LoadedRanker.load`,
calls `user_side(user_id, history, scene)` once per request (profile embeddings, the history
items through Enc: the expensive part) and `score(user, item_ids, features)` with the Feast
online features of the candidates (the columns `training_frame` gives offline). A bucket with
`retriever: dig` first asks `retrieve` for the candidates: the ranker as retriever (dig §3.4,
models/ranker/retrieval.py), MLP_u2t in place of the u2i features, over its own SIDs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.ranker.checkpoint import load_ranker
from models.ranker.data import USER_FIELDS
from models.ranker.model import DIGRanker, UserSide
from models.ranker.retrieval import CodeIndex, ranker_beam_search


@dataclass
class RequestUser:
    """What `user_side` computed for one request (ids kept for the dense part)."""

    profile: torch.Tensor  # (1, P)
    scene: torch.Tensor  # (1,)
    hist: torch.Tensor  # (1, T)
    keys: torch.Tensor  # (1, T, d) Enc of the history
    mask: torch.Tensor  # (1, T)


class LoadedRanker:
    """A trained DIG ranker with its encoding, ready to score candidates."""

    def __init__(
        self,
        model: DIGRanker,
        encoding,  # noqa: ANN001
        raw: dict,
        profiles: pd.DataFrame | None = None,
        mari: bool | None = None,
    ):
        self.model = model.eval()
        self.mari = model.cfg.mari if mari is None else mari  # None: as the ranker was trained
        self.enc = encoding
        self.history_len = int(raw["history_len"])
        self.profiles = profiles
        self._index: CodeIndex | None = None  # the SID trie, built at the first retrieval
        vocab = self.enc.vocab["item_id"]
        self._item_ids = np.full(max(vocab.values(), default=0) + 1, "", dtype=object)
        self._item_ids[list(vocab.values())] = list(vocab)  # item row -> item id (0: none)

    @classmethod
    def load(cls, folder: Path | str, mari: bool | None = None) -> LoadedRanker:
        """Load `ranker.safetensors` + `config.json` (and the bundle's users.parquet if beside);
        `mari` overrides the ranker's own setting (benchmarks compare both paths)."""
        model, enc, raw = load_ranker(Path(folder))
        users = Path(folder).parent / "users.parquet"
        profiles = None
        if users.exists():
            profiles = pd.read_parquet(users).drop_duplicates("user_id").set_index("user_id")
        return cls(model, enc, raw, profiles, mari)

    @torch.no_grad()
    def user_side(self, user_id: str, history: list[str], scene: str) -> RequestUser:
        """The request's user-side inputs and history encodings, computed once."""
        profile = torch.from_numpy(self.enc.profile([user_id], self.profiles))
        hist = torch.from_numpy(self.enc.history_rows([history], self.history_len))
        keys = self.model.enc(self.model.item_fields[hist])  # (1, T, d)
        scene_id = torch.from_numpy(self.enc.scene_ids([scene]))
        return RequestUser(profile, scene_id, hist, keys, hist > 0)

    @torch.no_grad()
    def retrieve(
        self, users: list[RequestUser], features: pd.DataFrame, beam_size: int, top_n: int
    ) -> list[tuple[list[str], np.ndarray]]:
        """The ranker as retriever (dig §3.4): one trie-constrained beam search over its SIDs
        for a batch of requests; `features` row i holds request i's user columns (any item's
        row from `OnlineFeatures.user_features`). Per request (item ids, final-layer recall logits),
        best first, at most `top_n`."""
        if self._index is None:
            self._index = CodeIndex.build(self.model.item_sids, self.model.cfg.codebook_size)
        batch = {
            "profile": torch.cat([u.profile for u in users]),  # (B, P)
            "scene": torch.cat([u.scene for u in users]),  # (B,)
            "user_dense": torch.from_numpy(self.enc.dense(features, self.enc.user_cols)),
            "hist": torch.cat([u.hist for u in users]),  # (B, T)
        }
        rows, scores = ranker_beam_search(self.model, batch, self._index, beam_size, top_n)
        out = []
        for r, s in zip(rows.numpy(), scores.numpy(), strict=True):
            keep = r > 0
            out.append((self._item_ids[r[keep]].tolist(), s[keep]))
        return out

    @torch.no_grad()
    def score(self, user: RequestUser, item_ids: list[str], features: pd.DataFrame) -> np.ndarray:
        """Click probability of every candidate (rank path, eq. 17); features row i = item i."""
        n = len(item_ids)
        if len(features) != n:
            raise ValueError(f"score: {len(features)} feature rows for {n} candidates")
        m = self.model
        dense = torch.from_numpy(self.enc.dense(features.iloc[:1], self.enc.user_cols))
        parts = [e(user.profile[:, i]) for i, e in enumerate(m.user_emb)]
        e_u = m.bn_u(torch.cat([*parts, m.scene_emb(user.scene), dense], -1))  # (1, d_u)
        rows = torch.from_numpy(self.enc.ids("item_id", item_ids))
        cross = torch.from_numpy(self.enc.dense(features, self.enc.cross_cols))
        if self.mari:  # user blocks once, item blocks per candidate
            pre = m.mari_user(UserSide(e_u, user.keys, user.mask))
            return torch.sigmoid(m.rank_task_logits_mari(pre, rows, cross)[:, 0]).numpy()
        side = UserSide(e_u, user.keys, user.mask).expand(n)
        return torch.sigmoid(m.rank_logits(side, rows, cross)).numpy()


__all__ = ["LoadedRanker", "RequestUser", "USER_FIELDS"]
