"""UniRec generative retriever: decoding paths, trie, model, beam search, evaluation."""
