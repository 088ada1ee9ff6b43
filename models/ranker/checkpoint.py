"""A ranker run folder's model: `ranker.safetensors` (weights) and `config.json` (network
config, feature encoding, history length), what serving and the next day's warm start load."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from models.ranker.data import RankerEncoding
from models.ranker.model import DIGRanker, RankerConfig

WEIGHTS, CONFIG = "ranker.safetensors", "config.json"


def save_ranker(
    model: DIGRanker, enc: RankerEncoding, history_len: int, out: Path, extra: dict | None = None
) -> Path:
    """Weights (safetensors) and config.json (network config, encoding, history length)."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    cfg = {
        "model": json.loads(model.cfg.to_json()),
        "encoding": json.loads(enc.to_json()),
        "history_len": history_len,
        **(extra or {}),
    }
    (out / CONFIG).write_text(json.dumps(cfg))
    return out


def load_ranker(folder: Path) -> tuple[DIGRanker, RankerEncoding, dict]:
    """Inverse of `save_ranker`: (model in eval mode, encoding, raw config)."""
    raw = json.loads((Path(folder) / CONFIG).read_text())
    state = load_file(str(Path(folder) / WEIGHTS))
    model = DIGRanker(RankerConfig(**raw["model"]), state["item_fields"], state["item_sids"])
    for name, tensor in state.items():  # variable-size buffers (bucket-mean tables)
        if name.startswith("bucket_"):
            setattr(model, name, tensor)
    model.load_state_dict(state)
    return model.eval(), RankerEncoding.from_dict(raw["encoding"]), raw
