"""BentoML service: retriever + ranker behind A/B buckets, with exposure logging."""
