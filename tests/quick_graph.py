"""Settings for the tests that run the whole daily graph (lifecycle, kill-and-rerun, serving).

They check that the graph runs, that gates decide and that files and rows stay whole, not
model quality: training is short, fewer held-out samples are scored, and the floors are
ones such short runs on two days of the tiny world meet.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from sidflow.config import PROJECT_ROOT, set_dotted

QUICK_TRAINING = {
    "sid.encoder.epochs": 5,
    "retriever.train.epochs": 1.0,
    "retriever.eval.max_samples": 300,
    "alignment.max_steps": 10,
    "ranker.max_steps": 20,
    "ranker.min_steps": 10,
    "ranker.warm_start.epochs": 0.5,
}
LOOSE_GATES = {
    "gates.sid.max_collision_rate": 0.25,  # one day of history: ~10% of paths collide
    "gates.retriever.hr_floor": {50: 0.0, 100: 0.0, 200: 0.0},
    "gates.retriever.purchase_hr_floor": {50: 0.0, 100: 0.0, 200: 0.0},
    "gates.ranker.min_auc": 0.0,
    "gates.ranker.max_auc_gap": 1.0,
}
QUICK_TINY = {"world.size": "tiny", **QUICK_TRAINING, **LOOSE_GATES}


def quick_params_file(folder: Path, workdir: Path, extra: dict | None = None) -> Path:
    """A params.yaml in `folder`: the project's settings with QUICK_TINY, `extra` and
    `workdir`, for `sidflow run` and `bentoml serve` subprocesses."""
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for dotted, value in {**QUICK_TINY, **(extra or {}), "workdir": str(workdir)}.items():
        set_dotted(raw, dotted, value)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
