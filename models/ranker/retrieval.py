"""The DIG ranker as a retriever (dig §3.4): beam search over its SID token space.

At step l every live prefix s_1..s_{l-1} of a request is extended by the tokens the trie of
the catalogue's codes allows, and each extension is scored by the retrieval path (eq. 16):
the shared Mixer over BN_sid(e_sid^(1:l)) and BN_u2t(u2t_hat^(1:l)), u2t_hat from MLP_u2t
replacing the u2i features c_{u,v}. The `beam_size` best extensions of each request survive
(a prefix's score is its layer-l click logit, the probability the layer-wise loss eq. 10
trains; ties keep the earlier beam, then the smaller token). After L steps each surviving
code is mapped to its items by the SID-to-item inverted index (`CodeIndex`): items sharing
a full code (a collision) share its score and follow in item-row order.

Batched over requests and beams like models/retriever/beam.py: the user side is encoded
once per request and every allowed extension of the batch is scored in one Mixer call.
`reference_ranker_beam_search` is the plain one-hypothesis-at-a-time version the tests
compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.ranker.model import DIGRanker, UserSide
from models.retriever.trie import PathTrie


@dataclass
class CodeIndex:
    """The catalogue's distinct full codes as a trie, and each code's items (CSR)."""

    trie: PathTrie  # over the distinct codes, tokens = code index 0..K-1
    codes: torch.Tensor  # (C, L) distinct codes, code + 1
    ptr: torch.Tensor  # (C + 1,) items of code c: rows[ptr[c]:ptr[c + 1]]
    rows: torch.Tensor  # (N',) item rows sorted by (code, row)

    @classmethod
    def build(cls, item_sids: torch.Tensor, codebook_size: int) -> CodeIndex:
        """From (N+1, L) codes + 1 (0 = no SID): every item row with a full code."""
        have = torch.nonzero((item_sids > 0).all(1)).flatten()  # (N',) item rows, ascending
        uniq, inv = torch.unique(item_sids[have], dim=0, return_inverse=True)  # (C, L), (N',)
        order = torch.argsort(inv, stable=True)  # by code, then item row
        counts = torch.bincount(inv, minlength=len(uniq))
        ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        trie = PathTrie((uniq - 1).numpy(), [codebook_size] * uniq.shape[1])
        return cls(trie, uniq, ptr, have[order])

    def items_of(self, leaf: int) -> list[int]:
        """Item rows of the distinct code with trie leaf `leaf`, ascending."""
        c = int(self.trie.leaf_item[leaf])
        return self.rows[self.ptr[c] : self.ptr[c + 1]].tolist()


def _select(user: UserSide, idx: torch.Tensor) -> UserSide:
    return UserSide(user.e_u[idx], user.hist[idx], user.mask[idx])


def _user(model: DIGRanker, batch: dict[str, torch.Tensor]) -> UserSide:
    dtype = next(model.parameters()).dtype
    return model.user_side(
        batch["profile"], batch["scene"], batch["user_dense"].to(dtype), batch["hist"]
    )


@torch.no_grad()
def ranker_beam_search(
    model: DIGRanker,
    batch: dict[str, torch.Tensor],
    index: CodeIndex,
    beam_size: int,
    top_n: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-N items per request by trie-constrained beam search over the ranker's SIDs.

    batch: profile (B, P), scene (B,), user_dense (B, D_u), hist (B, T) (as `encode_frame`).
    Returns (items (B, N) item rows, -1 padded; scores (B, N) final-layer recall logits,
    descending, -inf padded).
    """
    model.eval()
    user = _user(model, batch)
    trie, L = index.trie, model.cfg.n_layers
    b = user.e_u.shape[0]
    nodes = torch.zeros((b, 1), dtype=torch.long)  # (B, W) trie node per beam
    prefix = torch.zeros((b, 1, L), dtype=torch.long)  # (B, W, L) codes + 1 so far, 0 after
    scores = torch.zeros((b, 1))
    for t in range(L):
        allowed, child = trie.step(t, nodes)  # (B, W, K) each
        w, k = allowed.shape[1], allowed.shape[2]
        req, beam, tok = torch.nonzero(allowed, as_tuple=True)  # (M,) each, row-major order
        codes = prefix[req, beam].clone()  # (M, L)
        codes[:, t] = tok + 1
        logit = model.prefix_logit(_select(user, req), codes, t).float()  # (M,)
        cand = torch.full((b, w * k), float("-inf"))
        cand[req, beam * k + tok] = logit
        live = int(torch.isfinite(cand).sum(1).max()) if len(req) else 0
        keep = max(1, min(beam_size, live))
        # a stable descending sort: ties keep the earlier beam, then the smaller token
        scores, idx = torch.sort(cand, dim=1, descending=True, stable=True)
        scores, idx = scores[:, :keep], idx[:, :keep]  # (B, W')
        parent = torch.div(idx, k, rounding_mode="floor")
        new_prefix = prefix.gather(1, parent[..., None].expand(-1, -1, L)).clone()
        new_prefix[:, :, t] = idx % k + 1
        prefix = new_prefix
        nodes = child.view(b, -1).gather(1, idx)  # -1 where not allowed
    n = top_n or beam_size
    items_out = torch.full((b, n), -1, dtype=torch.long)
    scores_out = torch.full((b, n), float("-inf"))
    valid = nodes >= 0
    code = index.trie.leaf_item[nodes.clamp_min(0)]  # (B, W) distinct-code index
    starts, ends = index.ptr[code], index.ptr[code + 1]  # (B, W)
    for r in range(b):  # expand each surviving code to its items, best code first
        keep = valid[r]
        lengths = (ends[r] - starts[r])[keep]
        if not len(lengths):
            continue
        offsets = torch.repeat_interleave(starts[r][keep], lengths)
        within = torch.arange(int(lengths.sum())) - torch.repeat_interleave(
            lengths.cumsum(0) - lengths, lengths
        )
        rows = index.rows[offsets + within][:n]
        items_out[r, : len(rows)] = rows
        scores_out[r, : len(rows)] = torch.repeat_interleave(scores[r][keep], lengths)[:n]
    return items_out, scores_out


@torch.no_grad()
def reference_ranker_beam_search(
    model: DIGRanker, batch: dict[str, torch.Tensor], item_sids: np.ndarray, beam_size: int
) -> list[list[tuple[int, float]]]:
    """Plain version of `ranker_beam_search`: one request and one hypothesis at a time, a
    dict trie of the codes (item_sids (N+1, L) code + 1, 0 = none); for each request
    [(item row, score)] best first, every item of the `beam_size` surviving codes."""
    model.eval()
    codes = np.asarray(item_sids)
    L = codes.shape[1]
    root: dict = {}
    for row in range(len(codes)):
        if (codes[row] > 0).all():
            node = root
            for tok in codes[row].tolist():
                node = node.setdefault(tok, {})
            node.setdefault("items", []).append(row)
    out = []
    for r in range(batch["hist"].shape[0]):
        user = _user(model, {k: v[r : r + 1] for k, v in batch.items()})
        beams: list[tuple[tuple[int, ...], float, dict]] = [((), 0.0, root)]
        for t in range(L):
            cands = []
            for toks, _, node in beams:
                for tok in sorted(k for k in node if k != "items"):
                    path = torch.tensor([[*toks, tok] + [0] * (L - t - 1)])
                    score = float(model.prefix_logit(user, path, t).float())
                    cands.append((toks + (tok,), score, node[tok]))
            cands.sort(key=lambda c: -c[1])  # stable: ties keep beam, then token order
            beams = cands[:beam_size]
        out.append([(row, score) for _, score, node in beams for row in node["items"]])
    return out
