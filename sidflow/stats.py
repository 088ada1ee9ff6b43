"""Summaries over seeds and samples, as every results table reports them: the mean, the
sample standard deviation (ddof=1) over seeds, the standard error of a mean over samples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sample_sd(values: Sequence[float] | np.ndarray) -> float | None:
    """Sample standard deviation (ddof=1); None for fewer than two values."""
    v = np.asarray(values, float)
    return float(v.std(ddof=1)) if len(v) > 1 else None


def standard_error(values: Sequence[float] | np.ndarray) -> float | None:
    """Standard error of the mean, sd / sqrt(n); None for fewer than two values."""
    sd = sample_sd(values)
    return None if sd is None else sd / float(np.sqrt(len(values)))


def mean_sd(values: Sequence[float] | np.ndarray, digits: int = 4) -> str:
    """'mean ± sd' over seeds ('mean ± n/a' for one seed)."""
    m, sd = float(np.mean(np.asarray(values, float))), sample_sd(values)
    return f"{m:.{digits}f} ± " + ("n/a" if sd is None else f"{sd:.{digits}f}")
