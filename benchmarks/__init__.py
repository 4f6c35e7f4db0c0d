"""Timing and device checks: run each from the repository root as `python -m benchmarks.<name>`."""
