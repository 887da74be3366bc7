"""Metrics: FID (TF-Inception features), later inpainting metrics and baselines."""
