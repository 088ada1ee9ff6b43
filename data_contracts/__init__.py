"""Data contracts: Great Expectations suites, checkpoint runner, quarantine."""

import sidflow  # noqa: F401  (telemetry off before any library of this package loads)
