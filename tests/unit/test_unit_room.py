"""tests/unit holds in-process tests only: none starts a process, opens a socket or needs Redis.

What does lives beside it: tests/cli (the `tearline` command run as a user runs it),
tests/package (what is installed and what imports what), tests/integration and tests/gateway
(a real broker, Redis, uvicorn). Every test outside tests/unit is marked ``processes``
(tests/conftest.py), so ``pytest -m 'not processes'`` is the quick pure run.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import pytest

UNIT: Final = Path(__file__).parent
# What starts a process, opens a socket or reaches a server, directly or through our helpers.
FORBIDDEN_MODULES: Final = (
    "subprocess",
    "socket",
    "multiprocessing",
    "asyncio.subprocess",
    "redis",
    "uvicorn",
    "httpx",
    "requests",
    "typer.testing",
    "tests.processes",
    "tests.faults",
    "tests.integration",
    "tests.gateway",
    "tearline.broker.embedded",
    "tearline.broker.runner",
)
# Exception classes reach no server: a unit test may build the error a real one would raise.
ALLOWED_MODULES: Final = ("redis.exceptions",)
# The session's real Redis and the brokers built on it are fixtures, not imports.
FORBIDDEN_FIXTURES: Final = {"redis_server", "broker", "gateways", "fuzzed"}


def _forbidden(name: str) -> bool:
    if any(name == ok or name.startswith(ok + ".") for ok in ALLOWED_MODULES):
        return False
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_MODULES)


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            found += [f"imports {n}" for n in names if _forbidden(n)][:1]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [
                f"{node.name} takes the {a.arg} fixture"
                for a in node.args.args
                if a.arg in FORBIDDEN_FIXTURES
            ]
    return [f"{path.name}:{v}" for v in found]


@pytest.mark.parametrize("path", sorted(UNIT.glob("*.py")), ids=lambda p: p.name)
def test_a_unit_test_starts_no_process_and_opens_no_socket(path: Path) -> None:
    assert violations(path) == []


@pytest.mark.parametrize(
    "source",
    [
        "import subprocess",
        "import redis",
        "from redis.asyncio import Redis",
        "from tests.processes import start_broker",
        "from tearline.broker import embedded",
        "def test_x(redis_server): pass",
        "from typer.testing import CliRunner",
    ],
)
def test_the_room_check_catches_a_violation(tmp_path: Path, source: str) -> None:
    module = tmp_path / "test_violation.py"
    module.write_text(source + "\n")
    assert violations(module) != []
