"""PyTorch models: SID tokenizer, generative retriever, ranker, alignment, metrics."""
