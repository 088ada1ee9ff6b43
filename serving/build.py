"""Build the Bento (code + the bundle model) offline from `bentofile.yaml`.

`bentoml build` reads models from the BentoML home's model store; sidflow keeps its store in
the working folder (`<workdir>/bentoml/models`), so the build runs in a subprocess with
BENTOML_HOME pointing there and the bundle's tag added to the bentofile's `models`. The
Bento lands in `<workdir>/bentoml/bentos/sidflow/<version>/` (version = the bundle's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from sidflow.config import PROJECT_ROOT

BENTOFILE = PROJECT_ROOT / "bentofile.yaml"
_BUILD = """
import json, sys, bentoml
bento = bentoml.bentos.build_bentofile(sys.argv[1], build_ctx=sys.argv[2], version=sys.argv[3])
print(json.dumps({"tag": str(bento.tag), "path": bento.path}))
"""


def build_bento(workdir: Path, model_tag: str, timeout_s: float = 300.0) -> dict:
    """Build the Bento for `model_tag`; returns {"tag", "path"} (idempotent per version)."""
    home = Path(workdir).resolve() / "bentoml"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true",
           "UV_OFFLINE": "1"}  # fmt: skip
    version = model_tag.split(":", 1)[1]
    existing = home / "bentos" / "sidflow" / version
    if (existing / "bento.yaml").exists():
        return {"tag": f"sidflow:{version}", "path": str(existing)}
    cfg = yaml.safe_load(BENTOFILE.read_text())
    cfg["models"] = [model_tag]  # the bundle goes into the Bento
    bentofile = home / "staging" / f"bentofile-{version}.yaml"
    bentofile.parent.mkdir(parents=True, exist_ok=True)
    bentofile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, "-c", _BUILD, str(bentofile), str(PROJECT_ROOT), version]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s,
                          cwd=PROJECT_ROOT)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bentoml build of {model_tag} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bento_manifest(path: Path) -> dict:
    """The built Bento's bento.yaml (service, models, labels)."""
    return yaml.safe_load((Path(path) / "bento.yaml").read_text())
