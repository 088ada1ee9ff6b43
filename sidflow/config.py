"""The one settings model: `params.yaml` parsed and checked by pydantic.

Every entry point (CLI, Dagster, DVC stages, tests) loads settings through
`load_params`, so a wrong key or value fails at start with a message that names it.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PARAMS_PATH = PROJECT_ROOT / "params.yaml"


class ParamsError(ValueError):
    """Raised when params.yaml is missing, unparsable or invalid; the message names the key."""


class Strict(BaseModel):
    """Base for every settings block: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WorldSize(Strict):
    """Size preset of the synthetic world."""

    users: int = Field(gt=0)
    items: int = Field(gt=0, description="items in the catalogue on the first day")
    new_items_per_day: int = Field(ge=0)
    days: int = Field(gt=0)
    requests_per_user_day: float = Field(gt=0)


class WorldParams(Strict):
    """Synthetic e-commerce world: seed, start day, size presets and the one in use."""

    seed: int = 7
    start_date: dt.date = dt.date(2026, 1, 1)
    size: str = "small"
    items_per_request: int = Field(10, gt=0, le=50)
    sizes: dict[str, WorldSize]

    @model_validator(mode="after")
    def _size_is_known(self) -> WorldParams:
        if self.size not in self.sizes:
            raise ValueError(f"world.size '{self.size}' is not one of {sorted(self.sizes)}")
        return self

    @property
    def preset(self) -> WorldSize:
        """The size preset selected by `world.size`."""
        return self.sizes[self.size]

    def days(self) -> list[dt.date]:
        """Every simulated day of the selected preset, in order."""
        return [self.start_date + dt.timedelta(days=i) for i in range(self.preset.days)]


class DataParams(Strict):
    """Which source feeds the pipeline."""

    source: Literal["world", "amazon", "parquet"] = "world"
    amazon_path: Path = Path("../shared/data/amazon-beauty-2014-5core")
    parquet_path: Path | None = None
    scenes: list[str] = ["feed", "search", "similar", "review"]


class ContractParams(Strict):
    """Data-quality gate: limits on what the contracts may reject."""

    max_quarantine_fraction: float = Field(0.05, ge=0, le=1)


class Params(Strict):
    """All of sidflow's settings."""

    workdir: Path = Path(".sidflow")
    data: DataParams = DataParams()
    world: WorldParams
    contracts: ContractParams = ContractParams()

    def resolve(self, root: Path) -> Params:
        """Return a copy whose relative paths are anchored at `root` (the params file's folder)."""
        env_workdir = os.environ.get("SIDFLOW_WORKDIR")
        workdir = Path(env_workdir) if env_workdir else self.workdir
        data = self.data.model_copy(
            update={
                "amazon_path": _anchor(self.data.amazon_path, root),
                "parquet_path": _anchor(self.data.parquet_path, root)
                if self.data.parquet_path
                else None,
            }
        )
        return self.model_copy(update={"workdir": _anchor(workdir, root), "data": data})


def _anchor(path: Path, root: Path) -> Path:
    return path if path.is_absolute() else (root / path).resolve()


def _format_error(err: ValidationError, source: Path) -> str:
    lines = [f"{source}: invalid settings"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            got = e.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
            lines.append(f"  {key}: {e['msg']}{shown}")
    return "\n".join(lines)


def load_params(path: Path | str | None = None, overrides: dict | None = None) -> Params:
    """Load and validate params.yaml (or $SIDFLOW_PARAMS); `overrides` are dotted keys.

    Relative paths in the file are resolved against the file's folder, and
    $SIDFLOW_WORKDIR, when set, replaces `workdir` (tests use temp folders).
    """
    path = Path(path or os.environ.get("SIDFLOW_PARAMS") or DEFAULT_PARAMS_PATH)
    if not path.exists():
        raise ParamsError(f"settings file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    try:
        params = Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(_format_error(e, path)) from None
    return params.resolve(path.resolve().parent)


def _set_dotted(tree: dict, dotted: str, value: object) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
