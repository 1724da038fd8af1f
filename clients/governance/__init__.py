"""Governance: the signed registry, agreements signed by their parties, and the transparency log
that records every version (pure: bytes in, models out)."""
