"""Modules a library imports when it is imported but uses only on a path ``tearline`` never takes,
held back while the library is imported: it binds a stand-in, which imports the real module the
first time anything is asked of it.

stix2-validator imports ``requests`` (with urllib3 and its character-set detection) to fetch a
custom schema from a URL, which Tearline never asks it to do; every ``tearline publish`` of a STIX
bundle paid about 50 ms on the shared 2-core development machine to load it. What runs is
unchanged; only when the module loads moves, and for ``tearline`` that is never.

The stand-in is in ``sys.modules`` only while the library is imported (:func:`held_back`): any
other import of the module, before or after, is an ordinary one (pymisp's ``from requests.auth
import AuthBase`` among them), and the SDK, which never calls this, leaves an application's
modules alone. (The IRI grammar jsonschema would build is deferred in every process by
:mod:`clients.iri_grammar`, which must also stand in for a function jsonschema takes at import.)
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Iterator
from importlib.util import find_spec
from types import ModuleType
from typing import Any

_lock = threading.Lock()


class Deferred(ModuleType):
    """A module's stand-in, as a library bound it, until one of its attributes is asked for."""

    def __init__(self, name: str) -> None:
        super().__init__(name, f"{name}, imported on first use (tearline.clients.cli.deferred)")
        self._real: ModuleType | None = None

    def _load(self) -> ModuleType:
        with _lock:
            if self._real is None:
                if sys.modules.get(self.__name__) is self:
                    del sys.modules[self.__name__]
                self._real = importlib.import_module(self.__name__)
            return self._real

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._load(), name)


@contextlib.contextmanager
def held_back(*names: str) -> Iterator[None]:
    """While the body imports a library: stand-ins for the modules ``names`` (those imported
    already, or not installed, are left as they are). Afterwards ``sys.modules`` holds none of
    them; the library keeps the stand-ins it bound."""
    placed: dict[str, Deferred] = {}
    with _lock:
        for name in names:
            if name in sys.modules:
                continue
            try:
                if find_spec(name) is None:
                    continue
            except (ImportError, ValueError):
                continue
            placed[name] = sys.modules[name] = Deferred(name)
    try:
        yield
    finally:
        with _lock:
            for name, stand_in in placed.items():
                if sys.modules.get(name) is stand_in:
                    del sys.modules[name]
