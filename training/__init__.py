"""Reproducible construction and training of the embedded flux-mini model family."""
