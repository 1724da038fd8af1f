"""Loading ``policies/`` from disk: the edge around the pure :mod:`broker.policy.check`.

:func:`check_policies` and :func:`load_policies` read the folder
(:func:`~broker.policy.folder.read_policy_folder`) and, unless the caller passes ``now``, the
clock (a governed folder's documents expire), then hand both to the pure
:func:`~broker.policy.check.check_files`. Code that already holds the folder as read calls the
pure functions directly, with its own ``now``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tearline.broker.policy.check import Problem, check_files, load_files
from tearline.broker.policy.engine import Policy
from tearline.broker.policy.folder import read_policy_folder

__all__ = ["Problem", "check_policies", "load_policies"]


def check_policies(
    root: Path | str, *, now: datetime | None = None
) -> tuple[Policy | None, list[Problem]]:
    """Read, load and check a policy folder; the policy (None if invalid) and every problem."""
    files = read_policy_folder(Path(root))
    return check_files(files, now=datetime.now(UTC) if now is None else now)


def load_policies(root: Path | str, *, now: datetime | None = None) -> Policy:
    """Load a policy folder or raise :class:`PolicyError` naming the first problem."""
    files = read_policy_folder(Path(root))
    return load_files(files, now=datetime.now(UTC) if now is None else now)
