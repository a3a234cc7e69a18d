"""Conditioning extensions for the sampling loop (regions, controls)."""
