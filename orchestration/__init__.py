"""Dagster definitions for sidflow."""

import sidflow  # noqa: F401  (telemetry off before any library of this package loads)
