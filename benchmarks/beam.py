"""Beam-search benchmark: latency, throughput, FLOP/s utilisation, and Hugging Face T5.

Catalogue and model: Beauty-sized (12,101 items, cat_l2 6 / cat_l3 40 attributes, SIDs
K=256 x L=3 + dedup), the default `retriever.model` settings, random weights (cost does
not depend on training). Prints JSON with
- per-request latency p50 / p99 at beam 50 (one request per call),
- batched throughput (requests/s) at beam 50 and the configured batch size,
- achieved FLOP/s of batched beam search (FLOPs counted by torch's FlopCounterMode)
  as a share of torch matmul FLOP/s on the very matmul shapes the search issued,
  replayed alone in the same run,
- the same search done by Hugging Face `generate(num_beams=50,
  prefix_allowed_tokens_fn=...)` on a T5 built from a config of about equal size
  (TIGER / LETTER style: history SID tokens in, path tokens out), and the ratio.

    .venv/bin/python benchmarks/beam.py [--requests 200] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import sidflow  # noqa: E402,F401  (telemetry settings)
from models.retriever.beam import beam_search  # noqa: E402
from models.retriever.beam_reference import dict_trie  # noqa: E402
from models.retriever.build import build_retriever  # noqa: E402
from sidflow.config import load_params  # noqa: E402

MM_OPS = {"mm", "addmm", "bmm", "baddbmm"}


def catalogue(n: int, k: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Beauty-sized synthetic items, users and a SID table."""
    rng = np.random.default_rng(seed)
    l2 = rng.integers(0, 6, n)
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n)],
            "cat_l1": "beauty",
            "cat_l2": [f"c{a}" for a in l2],
            "cat_l3": [f"c{a}-{b}" for a, b in zip(l2, rng.integers(0, 7, n), strict=True)],
            "brand": [f"b{b}" for b in rng.integers(0, 2000, n)],
            "seller": None,
        }
    )
    sid = pd.DataFrame({"item_id": items["item_id"]})
    for j in range(3):
        sid[f"s{j}"] = rng.integers(0, k, n)
    sid["dedup"] = sid.groupby(["s0", "s1", "s2"]).cumcount()
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(22363)]})
    return items, users, sid


def requests(n_req: int, n_items: int, t: int, n_users: int, seed: int) -> dict[str, torch.Tensor]:
    """Random requests with full histories."""
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(1, n_items + 1, (n_req, t), generator=g)
    profile = torch.zeros((n_req, 3), dtype=torch.long)
    profile[:, 0] = torch.randint(1, n_users + 1, (n_req,), generator=g)
    return {
        "profile": profile,
        "hist": hist,
        "hist_type": torch.full((n_req, t), 3),
        "task": torch.zeros(n_req, dtype=torch.long),
    }


class MatmulShapes(TorchDispatchMode):
    """Records the shapes of every matmul-family op run under it."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, list[tuple[int, ...]]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in MM_OPS:
            self.calls.append((name, [tuple(a.shape) for a in args if torch.is_tensor(a)]))
        return func(*args, **(kwargs or {}))


def replay_seconds(calls: list[tuple[str, list[tuple[int, ...]]]], repeats: int = 3) -> float:
    """Time the recorded matmuls alone (fresh random operands), best of `repeats`."""
    ops = []
    for name, shapes in calls:
        ts = [torch.randn(s) for s in shapes]
        ops.append((getattr(torch, name), ts))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for fn, ts in ops:
            fn(*ts)
        best = min(best, time.perf_counter() - t0)
    return best


def t5_of_equal_size(n_params: int, vocab: int, d_model: int):
    """A T5 (from a config, no download) with about `n_params` parameters."""
    from transformers import T5Config, T5ForConditionalGeneration

    best = None
    for layers in range(1, 9):
        cfg = T5Config(
            vocab_size=vocab,
            d_model=d_model,
            d_kv=d_model // 8,
            d_ff=4 * d_model,
            num_layers=layers,
            num_decoder_layers=layers,
            num_heads=8,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
        model = T5ForConditionalGeneration(cfg).eval()
        size = sum(p.numel() for p in model.parameters())
        if best is None or abs(size - n_params) < abs(best[1] - n_params):
            best = (model, size)
    return best


def hf_latency(
    codes: np.ndarray,
    vocab_sizes: list[int],
    n_params: int,
    d_model: int,
    n_req: int,
    beam: int,
    hist_len: int,
) -> dict:
    """Per-request latency of HF generate with a trie in prefix_allowed_tokens_fn."""
    offsets = np.cumsum([2, *vocab_sizes[:-1]])  # 0 = pad/start, 1 = eos
    tokens = codes + offsets  # global token ids per path position
    vocab = int(offsets[-1] + vocab_sizes[-1])
    model, size = t5_of_equal_size(n_params, vocab, d_model)
    trie = dict_trie(tokens)

    def allowed(_batch_id: int, sent: torch.Tensor) -> list[int]:
        node = trie
        for tok in sent.tolist()[1:]:  # skip the decoder start token
            node = node.get(tok)
            if node is None:
                return [1]
        keys = [k for k in node if k != "item"]
        return keys or [1]

    g = torch.Generator().manual_seed(1)
    sid_len = codes.shape[1]
    lat = []
    for _ in range(n_req):
        items = torch.randint(0, len(tokens), (hist_len,), generator=g)
        inp = torch.from_numpy(tokens[items.numpy()]).reshape(1, -1)  # history path tokens
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                inp,
                num_beams=beam,
                num_return_sequences=beam,
                max_new_tokens=sid_len,
                min_new_tokens=sid_len,
                prefix_allowed_tokens_fn=allowed,
                do_sample=False,
                early_stopping=True,
            )
        lat.append(time.perf_counter() - t0)
        assert out.shape[0] == beam
    lat_ms = np.array(lat) * 1e3
    return {
        "params": size,
        "vocab": vocab,
        "layers": model.config.num_layers,
        "input_tokens": hist_len * sid_len,
        "latency_ms_p50": float(np.percentile(lat_ms, 50)),
        "latency_ms_p99": float(np.percentile(lat_ms, 99)),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and print JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=12101)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--requests", type=int, default=100, help="single-request latency samples")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--hf-requests", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    params = load_params().retriever.model
    items, users, sid = catalogue(args.items, args.k)
    parts = build_retriever(params, items, users, sid, ["review"], args.k)
    model, trie = parts.model.eval(), parts.trie
    n_params = sum(p.numel() for p in model.parameters())
    t = params.history_len
    # per-request latency (batch of one), after a warm-up
    single = requests(args.requests + 3, len(items), t, len(users), 1)
    lat = []
    for i in range(args.requests + 3):
        one = {k: v[i : i + 1] for k, v in single.items()}
        t0 = time.perf_counter()
        got, _ = beam_search(model, one, trie, args.beam)
        if i >= 3:
            lat.append(time.perf_counter() - t0)
        assert (got >= 0).all()
    lat_ms = np.array(lat) * 1e3
    # batched throughput
    batch = requests(args.batch, len(items), t, len(users), 2)
    beam_search(model, batch, trie, args.beam)
    t0 = time.perf_counter()
    for _ in range(args.batches):
        beam_search(model, batch, trie, args.beam)
    batched_s = (time.perf_counter() - t0) / args.batches
    # FLOPs of one batched search, and the matmul shapes it issued
    with FlopCounterMode(display=False) as fc:
        beam_search(model, batch, trie, args.beam)
    flops = fc.get_total_flops()
    rec = MatmulShapes()
    with rec:
        beam_search(model, batch, trie, args.beam)
    mm_seconds = replay_seconds(rec.calls)
    mm_flops = 0
    for name, shapes in rec.calls:
        if name in ("mm", "addmm"):
            (m, k), (_, n) = shapes[-2], shapes[-1]
            mm_flops += 2 * m * k * n
        else:
            (b, m, k), (_, _, n) = shapes[-2], shapes[-1]
            mm_flops += 2 * b * m * k * n
    achieved = flops / batched_s
    matmul_rate = mm_flops / mm_seconds
    hf = hf_latency(
        parts.paths.codes,
        parts.paths.spec.vocab_sizes,
        n_params,
        params.d_model,
        args.hf_requests,
        args.beam,
        t,
    )
    out = {
        "catalogue_items": len(items),
        "path": parts.paths.spec.fields,
        "vocab_sizes": parts.paths.spec.vocab_sizes,
        "model_params": n_params,
        "d_model": params.d_model,
        "beam": args.beam,
        "threads": args.threads,
        "latency_ms_p50": float(np.percentile(lat_ms, 50)),
        "latency_ms_p99": float(np.percentile(lat_ms, 99)),
        "batch": args.batch,
        "batched_seconds_per_batch": batched_s,
        "throughput_requests_per_s": args.batch / batched_s,
        "flops_per_request": flops / args.batch,
        "achieved_gflops": achieved / 1e9,
        "matmul_gflops_same_shapes": matmul_rate / 1e9,
        "matmul_calls": len(rec.calls),
        "share_of_matmul_flops": achieved / matmul_rate,
        "hf_t5_generate": hf,
        "hf_over_sidflow_latency_p50": hf["latency_ms_p50"] / float(np.percentile(lat_ms, 50)),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
