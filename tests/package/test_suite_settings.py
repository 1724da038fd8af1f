"""What the README says of how the suite runs: a time limit on every test, the slowest listed,
one worker per core for `make test` (and for `make test-latest`, the same suite)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_has_a_time_limit_and_the_slowest_are_listed(
    pytestconfig: pytest.Config,
) -> None:
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert float(options["timeout"]) > 0
    assert float(pytestconfig.getini("timeout")) == options["timeout"]  # pytest-timeout reads it
    assert re.search(r"--durations=\d+", options["addopts"])


def test_make_test_runs_one_worker_per_core() -> None:
    makefile = (ROOT / "Makefile").read_text()
    parallel = re.search(r"^PARALLEL := (.+)$", makefile, re.MULTILINE)
    assert parallel is not None
    assert "-n auto" in parallel.group(1)
    for target in ("test", "test-latest"):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
        assert recipe is not None, target
        assert "pytest -q $(PARALLEL)" in recipe.group(1), target
