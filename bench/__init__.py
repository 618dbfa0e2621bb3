"""Benchmarks: each prints JSON figures (last line one object) with a same-run baseline ratio."""
