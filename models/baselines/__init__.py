"""Baselines for the retriever evaluation: popularity, SASRec (BCE / CE); TIGER-like and the
UniRec ablations are settings of `models.retriever` (see `models.baselines.variants`)."""
