"""`dvc.yaml` reproduces from a clean clone, and `dvc exp run -S sid.K=128` works.

The clone is this checkout's tracked files in a fresh git repository (with the committed
`dvc.lock`), `../shared/data/amazon-beauty-2014-5core` beside it a small stand-in in the same
Amazon 5-core layout (the real Beauty pipeline takes minutes on 2 cores; its run is recorded
in benchmarks/RESULTS.md). The stages, commands and paths are those of the committed
`dvc.yaml` and `params.yaml`; only the pipeline's short-run knobs (`vars: quick`) are shorter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sidflow.config import PROJECT_ROOT

CATEGORY = "Beauty"
DAY0 = 1_388_534_400  # 2014-01-01 UTC, epoch seconds


def write_beauty_standin(root: Path, users: int = 300, items: int = 600, seed: int = 0) -> Path:
    """An Amazon 5-core folder (P5 datamaps, TiCoSeRec, S3-Rec, PLRec metadata) of `users`
    reviewing `items`: each user mostly reviews one product line, in order."""
    rng = np.random.default_rng(seed)
    asins = [f"B{i:06d}" for i in range(items)]  # sorted: TiCoSeRec / PLRec id k = asins[k-1]
    p5 = {a: str(k + 1) for k, a in enumerate(rng.permutation(asins))}
    id2user = {str(u + 1): f"A{u:07d}" for u in range(users)}
    lines = 12
    seqs, days = [], []
    for _ in range(users):
        line = rng.integers(lines)
        pool = np.arange(line, items, lines)
        start, n = int(rng.integers(len(pool))), int(rng.integers(5, 12))
        seqs.append(
            [
                int(pool[(start + k) % len(pool)])
                if rng.random() < 0.85
                else int(rng.integers(items))
                for k in range(n)
            ]
        )
        days.append(sorted(int(d) for d in rng.integers(0, 400, n)))
    for i in sorted(set(range(items)) - {i for seq in seqs for i in seq}):  # every item reviewed
        seqs[i % users].append(i)
        days[i % users].append(days[i % users][-1] + 1)
    item_lines, time_lines, s3_lines = [], [], []
    for u, (seq, when) in enumerate(zip(seqs, days, strict=True), start=1):
        item_lines.append(f"{u} " + " ".join(str(i + 1) for i in seq))
        time_lines.append(f"{u} " + " ".join(str(DAY0 + d * 86400) for d in when))
        s3_lines.append(f"{u} " + " ".join(p5[asins[i]] for i in seq))
    maps = {
        "user2id": {v: k for k, v in id2user.items()},
        "id2user": id2user,
        "item2id": p5,
        "id2item": {v: k for k, v in p5.items()},
    }
    files = {
        "p5-datamaps/datamaps.json": json.dumps(maps),
        f"ticoserec/{CATEGORY}_item_org_rank.txt": "\n".join(item_lines) + "\n",
        f"ticoserec/{CATEGORY}_time_org_rank.txt": "\n".join(time_lines) + "\n",
        f"s3rec/{CATEGORY}.txt": "\n".join(s3_lines) + "\n",
        "plrec/item_description.csv": "item_id:token\ttitle:token\tsales_type:token\t"
        "sales_rank:float\tcategories:token_seq\tprice:float\tbrand:token\n"
        + "".join(
            f"{k + 1}\tproduct {k}\t{CATEGORY}\t{k + 1}.0\t'{CATEGORY}', 'line {k % lines}', "
            f"'kind {k % 3}'\t{5 + k % 40}.5\tbrand {k % 17}\n"
            for k in range(items)
        ),
        "SOURCE.md": "A stand-in for the Amazon Beauty 2014 5-core folder (tests only).\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _clean_clone(dest: Path) -> Path:
    """This checkout's tracked files (as they are now) committed in a fresh repository."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for rel in filter(None, (t.decode() for t in tracked)):
        src = PROJECT_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True, capture_output=True)
    _commit(dest, "clone")
    return dest


def _commit(repo: Path, message: str) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for cmd in (["add", "-A"], ["commit", "-q", "-m", message]):
        subprocess.run([*git, *cmd], cwd=repo, check=True, capture_output=True)


def _dvc(repo: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        # the stages call `python -m lifecycle.cli.main` from the clone: this interpreter
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for key in ("SIDFLOW_WORKDIR", "SIDFLOW_PARAMS", "SIDFLOW_SET", "PYTHONPATH"):
        env.pop(key, None)
    env.setdefault("OMP_NUM_THREADS", "1")  # small models: one thread, no oversubscription
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_repro_from_a_clean_clone_then_an_experiment(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "sidflow"
    repo.mkdir()
    _clean_clone(repo)
    assert (repo / "dvc.lock").exists(), "dvc.lock must be committed"
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    write_beauty_standin((repo / pipeline["vars"][0]["amazon"]).resolve())  # ../shared/...
    # the pipeline's short-run knobs, shorter still for the stand-in (stages and commands as
    # committed); the clone commits them as its own state
    quick = {"encoder_epochs": 1, "max_steps": 30, "eval_samples": 50}
    assert set(quick) <= set(pipeline["vars"][1]["quick"])
    pipeline["vars"][1]["quick"].update(quick)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    _commit(repo, "stand-in settings")

    repro = _dvc(repo, "repro")
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    stages = ["amazon_beauty", "sid_amazon_beauty", "retriever_amazon_beauty"]
    for stage in stages:
        assert f"Running stage '{stage}'" in repro.stdout
    retriever = json.loads(
        (repo / ".sidflow/pipeline/retriever/amazon-beauty/metrics.json").read_text()
    )
    assert retriever  # evaluated leave-one-out
    status = _dvc(repo, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout or "{}") == {}, status.stdout
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(stages) <= set(lock)
    assert lock["sid_amazon_beauty"]["params"]["params.yaml"]["sid"]["K"] == 256

    exp = _dvc(repo, "exp", "run", "-S", "sid.K=128")
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    assert "Running stage 'amazon_beauty'" not in exp.stdout  # unchanged: from the run cache
    assert "Running stage 'sid_amazon_beauty'" in exp.stdout
    show = _dvc(repo, "exp", "show", "--json")
    assert show.returncode == 0, show.stderr
    shown = json.dumps(json.loads(show.stdout))
    assert '"K": 128' in shown and '"K": 256' in shown  # the experiment beside its baseline
