"""Modules a library imports when it is imported but uses only on a path ``tearline`` never takes,
held back in the ``tearline`` process until something asks for one of their attributes.

stix2-validator imports ``requests`` (with urllib3 and its character-set detection) to fetch a
custom schema from a URL, which Tearline never asks it to do; every ``tearline publish`` of a STIX
bundle paid about 50 ms on the shared 2-core development machine to load it. :func:`defer` puts a
stand-in in ``sys.modules``: the library binds the stand-in, and the first attribute anything asks
of it imports the real module, which from then on answers and is what later importers get. What
runs is unchanged; only when the module loads moves, and for ``tearline`` that is never.

Only the command's own process does this (``clients.cli.main``): the SDK leaves an application's
modules alone. (The IRI grammar jsonschema would build is deferred for every process, SDK too, by
:mod:`clients.iri_grammar`, which must also stand in for a function jsonschema takes at import.)
"""

from __future__ import annotations

import importlib
import sys
import threading
from importlib.util import find_spec
from types import ModuleType
from typing import Any

_lock = threading.Lock()


class Deferred(ModuleType):
    """A module's stand-in until one of its attributes is asked for."""

    def __init__(self, name: str, search_locations: list[str] | None) -> None:
        super().__init__(name, f"{name}, imported on first use (tearline.clients.cli.deferred)")
        if search_locations is not None:
            self.__path__ = search_locations  # its submodules still import as themselves
        self._real: ModuleType | None = None

    def _load(self) -> ModuleType:
        with _lock:
            if self._real is None:
                if sys.modules.get(self.__name__) is self:
                    del sys.modules[self.__name__]
                try:
                    self._real = importlib.import_module(self.__name__)
                except BaseException:
                    sys.modules.setdefault(self.__name__, self)
                    raise
            return self._real

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._load(), name)


def defer(name: str) -> None:
    """Hold ``name`` back until first used; nothing when it is imported already or absent."""
    if name in sys.modules:
        return
    try:
        spec = find_spec(name)
    except (ImportError, ValueError):
        return
    if spec is None:
        return
    with _lock:
        sys.modules.setdefault(name, Deferred(name, spec.submodule_search_locations))
