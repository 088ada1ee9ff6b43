"""DIG ranker (dig §3.2-3.4): u2i cross features, a SID-embedding retrieval path, MLP_u2t."""
