"""Peer baselines: other threat-sharing servers measured the way the benchmarks measure Tearline."""
