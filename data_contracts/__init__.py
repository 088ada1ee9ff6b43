"""Data contracts: Great Expectations suites, the runner, staging and publishing a day, quarantine."""

import sidflow  # noqa: F401  (telemetry off before any library of this package loads)
