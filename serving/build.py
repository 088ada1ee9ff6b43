"""Build the Bento (code + one bundle) offline from `bentofile.yaml`; export it as an archive.

sidflow keeps its BentoML stores in the working folder (`<workdir>/bentoml/models`, see
serving/bundle.py, and `<workdir>/bentoml/bentos`), not in ~/bentoml. BentoML reads
BENTOML_HOME once, when it is first imported, so the build and the export run in a
subprocess with BENTOML_HOME pointing at the working folder (and telemetry off). The
bentofile's `models` entry is pinned to the bundle's tag in a staged copy, so the Bento
carries exactly that bundle; the Bento's version is the bundle's (`sidflow:<version>`).
`lock_packages: false` and UV_OFFLINE keep the build off the network (no package index).
A build takes ~5 s on the tiny world (2 cores), so `bento_bundle` builds one per bundle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from serving.bundle import model_store
from sidflow.config import PROJECT_ROOT

BENTOFILE = PROJECT_ROOT / "bentofile.yaml"
BENTO_NAME = "sidflow"

# Runs in the subprocess: argv = bentofile, build context, version. A Bento of the same
# version is replaced (the code may have changed since), so rebuilding is safe.
_BUILD = """
import json, sys
import sidflow  # telemetry off
import bentoml
tag = f"{sys.argv[4]}:{sys.argv[3]}"
try:
    bentoml.bentos.delete(tag)
except bentoml.exceptions.NotFound:
    pass
bento = bentoml.bentos.build_bentofile(sys.argv[1], build_ctx=sys.argv[2], version=sys.argv[3])
print(json.dumps({"tag": str(bento.tag), "path": str(bento.path)}))
"""
_EXPORT = """
import sys
import sidflow  # telemetry off
import bentoml
print(bentoml.bentos.export_bento(sys.argv[1], sys.argv[2]))
"""


def _env(workdir: Path) -> dict[str, str]:
    home = Path(workdir).resolve() / "bentoml"
    return {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "SIDFLOW_WORKDIR": str(Path(workdir).resolve()),
        "UV_OFFLINE": "1",
        "PIP_NO_INDEX": "1",
    }


def _run(script: str, args: list[str], workdir: Path, what: str, timeout_s: float) -> str:
    cmd = [sys.executable, "-c", script, *args]
    done = subprocess.run(
        cmd, env=_env(workdir), capture_output=True, text=True, timeout=timeout_s, cwd=PROJECT_ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed (BENTOML_HOME={_env(workdir)['BENTOML_HOME']}):\n{done.stderr[-3000:]}"
        )
    return done.stdout.strip().splitlines()[-1]


def bento_store(workdir: Path):  # noqa: ANN201 - bentoml's BentoStore
    """The Bento store under the working folder (`<workdir>/bentoml/bentos`)."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    # bentoml reads its home at import: imported where used, after the env is set
    from bentoml._internal.bento import BentoStore

    path = Path(workdir) / "bentoml" / "bentos"
    path.mkdir(parents=True, exist_ok=True)
    return BentoStore(path)


def build_bento(workdir: Path, model_tag: str, timeout_s: float = 300.0) -> dict[str, str]:
    """Build `sidflow:<version>` from bentofile.yaml with the bundle `model_tag` as its model.

    Returns {"tag": "sidflow:<version>", "path": <Bento folder>}. Raises ValueError when the
    bundle is not in the working folder's model store, RuntimeError when the build fails.
    """
    import bentoml  # see bento_store: imported where used

    try:
        model_store(workdir).get(model_tag)
    except bentoml.exceptions.NotFound:
        raise ValueError(
            f"bundle {model_tag!r} is not in the model store {Path(workdir) / 'bentoml' / 'models'}"
        ) from None
    version = model_tag.split(":", 1)[1]
    cfg = yaml.safe_load(BENTOFILE.read_text())
    cfg["models"] = [model_tag]  # this bundle, not `:latest`
    staged = Path(workdir) / "bentoml" / "staging" / f"bentofile-{version}.yaml"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        out = _run(
            _BUILD,
            [str(staged), str(PROJECT_ROOT), version, BENTO_NAME],
            workdir,
            f"bentoml build of {model_tag}",
            timeout_s,
        )
    finally:
        staged.unlink(missing_ok=True)
    return json.loads(out)


def export_bento(workdir: Path, bento_tag: str, out: Path, timeout_s: float = 300.0) -> Path:
    """Write the Bento with its model(s) to one archive (`bentoml export`); returns its path.

    The archive is what another machine imports (`bentoml import`) to serve offline.
    """
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(_run(_EXPORT, [bento_tag, str(out)], workdir, f"export of {bento_tag}", timeout_s))


def bento_manifest(path: Path) -> dict:
    """The built Bento's bento.yaml (service, models, labels)."""
    return yaml.safe_load((Path(path) / "bento.yaml").read_text())
