"""BentoML service: retriever + ranker behind A/B buckets, with exposure logging."""

import sidflow  # noqa: F401  (telemetry off before any library of this package loads)
