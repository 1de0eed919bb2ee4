"""Benchmarks: speed of training and of the demo (run from the repository root)."""
