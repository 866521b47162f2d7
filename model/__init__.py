"""vem.model: the PyTorch VeM (PAPER.md §§2-5)."""
