"""Feature computation (DuckDB SQL) and the Feast feature repo."""

import sidflow  # noqa: F401  (telemetry off before any library of this package loads)
