"""Names a package re-exports, imported on first use (PEP 562). Pure.

``tearline`` and ``tearline.clients.protocol`` list their public names and the module each
lives in; a name is imported the first time it is asked for, so importing the package (or the
core beneath it) loads nothing else.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any


def load(
    package: str, where: Mapping[str, str], namespace: MutableMapping[str, Any], name: str
) -> Any:
    """``name`` from the module ``where`` says, kept in ``namespace`` as a plain attribute."""
    module = where.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    namespace[name] = value
    return value


def names(namespace: Iterable[str], exported: Iterable[str]) -> list[str]:
    """What ``dir()`` of such a package lists: what it holds and what it exports."""
    return sorted({*namespace, *exported})
