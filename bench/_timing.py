"""Timing helpers shared by the benchmarks: medians of repeated runs, results written as JSON."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def rate(
    fn: Callable[[], object], ops_per_call: int = 1, repeats: int = 5, min_s: float = 0.2
) -> float:
    """Median operations per second over ``repeats`` runs of at least ``min_s`` seconds."""
    calls = 1
    while True:  # calibrate so one run lasts about min_s
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start >= min_s / 4 or calls >= 1 << 20:
            break
        calls *= 2
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = 0
        while True:
            for _ in range(calls):
                fn()
            n += calls
            elapsed = time.perf_counter() - start
            if elapsed >= min_s:
                break
        samples.append(n * ops_per_call / elapsed)
    return statistics.median(samples)


def write(name: str, data: Any) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
