"""Benchmarks of cellvec (accuracy against baselines, scale); outside the product, run from a checkout."""
