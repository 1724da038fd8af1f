"""Benchmark scenarios: each measures one path of the broker, on real processes."""
