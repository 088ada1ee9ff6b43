"""PyTorch models: SID tokenizer, generative retriever, ranker, alignment, metrics."""

import sidflow  # noqa: F401  (telemetry off before any library of this package loads)
