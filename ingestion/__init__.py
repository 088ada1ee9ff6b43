"""Sources, canonical schema, raw landing and the DuckDB warehouse."""

import sidflow  # noqa: F401  (telemetry off before any library of this package loads)
