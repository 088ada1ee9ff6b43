"""Writing a SID version to disk: the DVC-versioned artefacts and the plots beside them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import save_file

from models.tokenizer.embeddings import EncoderArtefact
from models.tokenizer.plots import concentration_figure, load_figure
from models.tokenizer.table import SidTable
from sidflow.atomic import staged_folder

EMBEDDINGS_FILE = "embeddings.safetensors"


def write_artefacts(
    art: Path,
    table: SidTable,
    vectors: np.ndarray,
    source: str,
    encoder: EncoderArtefact | None,
    manifest: dict,
) -> Path:
    """Replace `art` with the table, codebooks, embeddings (rows = table rows), encoder and
    manifest. Everything written is a pure function of the inputs (no clocks, no paths), so
    the folder's DVC hash identifies the version."""
    with staged_folder(art) as staging:  # whole or not at all: the next day loads it
        table.save(staging)
        save_file(
            {"vectors": np.ascontiguousarray(vectors, dtype=np.float32)},
            str(staging / EMBEDDINGS_FILE),
            metadata={"source": source},
        )
        if encoder is not None:
            encoder.save(staging)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return art


def write_plots(
    folder: Path,
    reports: dict[str, dict],
    loads: dict[str, np.ndarray],
    cap: float,
    tau: float,
    title: str,
) -> dict[str, Path]:
    """concentration.png (UniRec Fig. 3), loads.png and concentration.csv (a DVC plot)."""
    rows = [
        {"method": m, "level": lv, "top": t, "share": v, "label": f"{lv} {t} {m}"}
        for m, r in reports.items()
        for lv, tops in r["concentration"].items()
        for t, v in tops.items()
    ]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "concentration.csv", index=False)
    return {
        "concentration": concentration_figure(reports, folder / "concentration.png", title),
        "loads": load_figure(loads, cap, tau, folder / "loads.png"),
        "concentration_csv": folder / "concentration.csv",
    }
