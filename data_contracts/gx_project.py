"""The file-backed Great Expectations project under the working folder, opened so that a run
killed in the middle of a GX write cannot break the next run.

GX writes its files in place (`open(path, "w")`, not write-then-rename). A process killed while
it writes great_expectations.yml, config_variables.yml or a suite, validation definition or
checkpoint leaves that file cut short, and every later `get_context` or `add_or_update` fails
on it. sidflow declares all of those again on each validation (`runner._run_checkpoint`
add-or-updates them; GX scaffolds the two YAML files when they are missing), so a cut file holds
nothing that is not rebuilt. `gx_context` moves such a file to `gx/uncommitted/interrupted/`
(kept, never deleted), logs it and lets GX write it again. Validation results and Data Docs
pages are not checked: a cut one does not stop the next validation.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import great_expectations as gx
import yaml
from great_expectations.data_context.types.base import ProgressBarsConfig

from sidflow.atomic import set_aside

YAML_FILES = ("great_expectations.yml", "uncommitted/config_variables.yml")
JSON_STORES = ("expectations", "checkpoints", "validation_definitions")
INTERRUPTED = Path("uncommitted") / "interrupted"


def _is_mapping(path: Path, load: Callable[[str], object]) -> bool:
    try:
        return isinstance(load(path.read_text()), dict)
    except (ValueError, yaml.YAMLError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        return False


def cut_config_files(gx_dir: Path) -> list[Path]:
    """The GX config files under `gx_dir` that do not parse to a mapping (cut short by a kill)."""
    found = [
        gx_dir / rel
        for rel in YAML_FILES
        if (gx_dir / rel).exists() and not _is_mapping(gx_dir / rel, yaml.safe_load)
    ]
    for store in JSON_STORES:
        found += [
            p for p in sorted((gx_dir / store).glob("*.json")) if not _is_mapping(p, json.loads)
        ]
    return found


@functools.lru_cache(maxsize=4)
def gx_context(root: str) -> gx.data_context.FileDataContext:
    """The file-backed GX project in `root` (progress bars off), cut files set aside first."""

    gx_dir = Path(root) / "gx"
    if cut := cut_config_files(gx_dir):
        set_aside(cut, gx_dir, gx_dir / INTERRUPTED, "does not parse (a GX write cut short)")
    try:
        ctx = gx.get_context(mode="file", project_root_dir=root)
    except Exception as e:  # a YAML prefix that parses but that GX rejects (KeyError, schema)
        config = gx_dir / "great_expectations.yml"
        if not config.exists():
            raise
        set_aside([config], gx_dir, gx_dir / INTERRUPTED, f"GX cannot load it ({e!r})")
        ctx = gx.get_context(mode="file", project_root_dir=root)
    bars = ctx.variables.progress_bars  # a dict when read from the file
    on = bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", None)
    if on is not False:  # write the config only when it changes
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        ctx.variables.save()
    return ctx
