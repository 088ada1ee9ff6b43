"""In-process recommender over one bundle: the code path `bentoml serve` and the simulation share.

For a batch of requests (user, scene, k, optional recent history):
1. history = the request's recent items, else the user's last engagements in the bundle;
2. retrieval: the bundle's near-line candidates when it holds the beam output of exactly this
   input (serving/candidates.py, serving/nearline.py), else one trie-constrained beam search
   for the rest of the batch (UniRec, unirec §3.5); a bucket with `retriever: dig` instead
   asks the bundle's DIG ranker to retrieve (dig §3.4: beam search over the ranker's SIDs,
   MLP_u2t in place of the u2i features), `candidates` = "dig";
3. ranking: when the bundle holds a ranker, the candidates' u2i features come from the Feast
   online store and the ranker scores them, its user-side part computed once per request;
   without a ranker the beam order (path log-probability) is the ranking;
4. users the model cannot serve (unknown user and no known history item) get the scene's
   most engaged items of the last days, flagged `fallback`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.ranker.serving import LoadedRanker
from models.retriever.beam import beam_search
from models.retriever.stage import load_item_paths
from models.retriever.train import load_checkpoint
from models.retriever.trie import PathTrie
from models.space import BEHAVIOURS, FeatureSpace, task_names
from serving.candidates import CandidateTable, input_keys

TASK_BEHAVIOUR = "click"  # the BOS objective when the bundle's manifest names none


@dataclass
class Request:
    """One recommendation request (already validated)."""

    user_id: str
    scene: str
    k: int
    history: list[str] = field(default_factory=list)  # recent item ids, oldest first


@dataclass
class Recommendation:
    """The answer to one request."""

    items: list[str]
    scores: list[float]
    fallback: bool
    stage: str  # "ranker", "retriever" or "popularity"
    candidates: str = ""  # "nearline" (precomputed beam output), "live" (beam search), "dig" (the
    # DIG ranker as retriever), "" (none)


@dataclass
class Served:
    """One answered request, as the API returns it."""

    request_id: str
    user_id: str
    scene: str
    bucket: str
    model: str
    rec: Recommendation


class Recommender:
    """A loaded bundle: retriever, optional ranker, vocabularies, histories, popularity."""

    def __init__(
        self,
        folder: Path,
        beam_size: int = 50,
        online_features=None,  # noqa: ANN001 - features.store.OnlineFeatures
    ):
        folder = Path(folder)
        self.folder = folder
        self.manifest = json.loads((folder / "manifest.json").read_text())
        # the Task-Conditioned BOS requests ask with: the evaluation's (review logs: purchase)
        self.behaviour = self.manifest.get("task_behaviour", TASK_BEHAVIOUR)
        self.model = load_checkpoint(folder / "retriever" / "model.safetensors")
        self.paths = load_item_paths(
            folder / "retriever" / "item_paths.parquet", self.model.cfg.path
        )
        self.trie = PathTrie(self.paths.codes, self.paths.spec.vocab_sizes)
        users = pd.read_parquet(folder / "users.parquet")
        catalogue = pd.read_parquet(folder / "catalogue.parquet")
        scenes = list(dict.fromkeys(t.split("/", 1)[1] for t in self.model.cfg.tasks))
        self.space = FeatureSpace.build(catalogue, users, scenes)
        self.catalogue = set(catalogue["item_id"].astype(str))
        self.profile_fields = self.model.cfg.model.profile_fields
        self.history_len = self.model.cfg.model.history_len
        self._profiles = users.drop_duplicates("user_id").set_index("user_id")
        hist = pd.read_parquet(folder / "histories.parquet")
        self._history = {
            u: (g["item_id"].tolist(), g["event_type"].tolist())
            for u, g in hist.groupby("user_id", sort=False)
        }
        pop = pd.read_parquet(folder / "popularity.parquet")
        overall = pop.groupby("item_id")["engagements"].sum().sort_values(ascending=False)
        self._popular = {s: g["item_id"].tolist() for s, g in pop.groupby("scene")}
        self._popular_all = overall.index.tolist() or sorted(self.catalogue)
        self._tasks = {t: i for i, t in enumerate(task_names(self.space.scenes))}
        self.beam_size = beam_size
        self.ranker = None
        if (folder / "ranker").exists():
            self.ranker = LoadedRanker.load(folder / "ranker")
        self.online = online_features
        self.nearline = CandidateTable.load(folder)  # None when the bundle carries none

    def _encode(self, reqs: list[Request]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """Model inputs for `reqs` and a mask of the requests the model can serve."""
        n, t = len(reqs), self.history_len
        hist = np.zeros((n, t), np.int64)
        hist_type = np.zeros((n, t), np.int64)
        profile = np.zeros((n, len(self.profile_fields)), np.int64)
        task = np.zeros(n, np.int64)
        known = np.zeros(n, bool)
        for i, r in enumerate(reqs):
            items, types = self._history.get(r.user_id, ([], []))
            if r.history:
                items, types = [*items, *r.history], [*types, *([self.behaviour] * len(r.history))]
            ids = self.space.ids("item_id", items[-t:])
            if len(ids):
                hist[i, -len(ids) :] = ids
                hist_type[i, -len(ids) :] = [BEHAVIOURS.index(x) + 1 for x in types[-t:]]
            for j, f in enumerate(self.profile_fields):
                if f == "user_id":
                    profile[i, j] = self.space.ids("user_id", [r.user_id])[0]
                elif r.user_id in self._profiles.index and f in self._profiles.columns:
                    profile[i, j] = self.space.ids(f, [self._profiles.at[r.user_id, f]])[0]
            task[i] = self._tasks.get(f"{self.behaviour}/{r.scene}", 0)
            known[i] = bool((hist[i] > 0).any()) or profile[i, 0] > 0
        batch = {
            "profile": torch.from_numpy(profile),
            "hist": torch.from_numpy(hist),
            "hist_type": torch.from_numpy(hist_type),
            "task": torch.from_numpy(task),
        }
        return batch, known

    def popular(self, scene: str, k: int) -> list[str]:
        """The scene's most engaged recent items (all scenes' when the scene has too few)."""
        out = list(self._popular.get(scene, []))[:k]
        seen = set(out)
        out += [i for i in self._popular_all if i not in seen][: k - len(out)]
        return out

    def history(self, req: Request) -> list[str]:
        """The request's item history for the ranker: the bundle's, then the request's."""
        return self._history.get(req.user_id, ([], []))[0] + req.history

    def can_retrieve_with_ranker(self) -> bool:
        """True when the bundle holds a ranker (and its online features) to retrieve with."""
        return self.ranker is not None and self.online is not None

    @torch.no_grad()
    def recommend(self, reqs: list[Request], retriever: str = "unirec") -> list[Recommendation]:
        """Answer a batch of requests with one beam search (and one ranker pass per request).

        `retriever`: "unirec" (the generative retriever, near-line or live) or "dig" (the DIG
        ranker's own beam search, when the bundle holds a ranker; else UniRec)."""
        if not reqs:
            return []
        batch, known = self._encode(reqs)
        out: list[Recommendation | None] = [None] * len(reqs)
        idx = np.flatnonzero(known)
        if len(idx) and retriever == "dig" and self.can_retrieve_with_ranker():
            self._recommend_dig(reqs, idx, out)
        elif len(idx):
            sub = {k: v[idx] for k, v in batch.items()}
            cands: dict[int, tuple[np.ndarray, np.ndarray, str]] = {}
            live = list(range(len(idx)))
            if self.nearline is not None:
                live = []
                for b, (i, key) in enumerate(zip(idx, input_keys(sub), strict=True)):
                    width = max(self.beam_size, reqs[i].k)  # as the live path's, alone
                    hit = self.nearline.get(reqs[i].user_id, reqs[i].scene, key, width)
                    if hit is None:
                        live.append(b)
                    else:
                        cands[int(i)] = (*hit, "nearline")
            if live:
                width = max(self.beam_size, max(reqs[idx[b]].k for b in live))
                rows, logp = beam_search(  # (B', W) each
                    self.model, {k: v[live] for k, v in sub.items()}, self.trie, width
                )
                for j, b in enumerate(live):
                    cands[int(idx[b])] = (rows[j].numpy(), logp[j].numpy(), "live")
            for i in idx:
                r, lp, how = cands[int(i)]
                keep = r >= 0
                items = self.paths.item_ids[r[keep]].astype(str).tolist()
                out[i] = self._rank(reqs[i], items, lp[keep].tolist())
                out[i].candidates = how
        for i in np.flatnonzero(~known):
            items = self.popular(reqs[i].scene, reqs[i].k)
            out[i] = Recommendation(items, [0.0] * len(items), True, "popularity")
        return out  # type: ignore[return-value]

    def _recommend_dig(
        self, reqs: list[Request], idx: np.ndarray, out: list[Recommendation | None]
    ) -> None:
        """The DIG path for requests `idx`: one ranker beam search (its user side and user
        features once per request), then the ranker's rank path over the candidates."""
        users = [
            self.ranker.user_side(reqs[i].user_id, self.history(reqs[i]), reqs[i].scene)
            for i in idx
        ]
        feats = pd.concat([self.online.user_features(reqs[i].user_id) for i in idx])
        width = max(self.beam_size, max(reqs[i].k for i in idx))
        found = self.ranker.retrieve(users, feats, width, width)  # as the UniRec beam
        for i, user, (items, scores) in zip(idx, users, found, strict=True):
            out[i] = self._rank(reqs[i], items, scores.tolist(), user)
            out[i].candidates = "dig"

    def _rank(
        self,
        req: Request,
        items: list[str],
        scores: list[float],
        user=None,  # noqa: ANN001
    ) -> Recommendation:
        """Rank retrieved candidates with the ranker (if any) and keep the top k (`user`: the
        ranker's user side when already computed)."""
        if self.ranker is None or self.online is None or not items:
            return Recommendation(items[: req.k], scores[: req.k], False, "retriever")
        feats = self.online.get(req.user_id, items)
        if user is None:
            user = self.ranker.user_side(req.user_id, self.history(req), req.scene)  # once
        s = self.ranker.score(user, items, feats)
        order = np.argsort(-s, kind="stable")[: req.k]
        return Recommendation(
            [items[j] for j in order], [float(s[j]) for j in order], False, "ranker"
        )
