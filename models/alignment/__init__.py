"""Alignment of the generative retriever with business objectives: RFT + DPO (unirec §3.6)."""
