"""jsonschema without the 2.5 s it spends at import building an IRI grammar nobody asked for yet.

``import jsonschema`` registers its format checkers, and for ``iri`` and ``iri-reference`` it
imports rfc3987-syntax (installed with stix2-validator), which builds three Earley parsers of
the RFC 3987 grammar at import: about 2.5 s on the shared 2-core development machine, paid by
every process that validates a policy folder or a STIX bundle, though neither the policy
schemas nor the STIX 2.1 schemas use those formats.

:func:`defer` puts a stand-in for ``rfc3987_syntax`` in ``sys.modules`` before jsonschema is
imported. jsonschema binds the stand-in's ``is_valid_syntax``; the first time an ``iri`` is
checked, the stand-in imports the real module (which builds the grammar then, once) and from
then on calls it. Every check is the same check, on the same grammar; only its one-time setup
moves from import to first use. Any other attribute asked of the stand-in loads the real module
too, and later importers get the real module.
"""

from __future__ import annotations

import importlib
import sys
import threading
from importlib.util import find_spec
from types import ModuleType
from typing import Any, Final

NAME: Final = "rfc3987_syntax"
_lock = threading.Lock()


class _Deferred(ModuleType):
    """``rfc3987_syntax`` until its grammar is needed."""

    def __init__(self, search_locations: list[str] | None) -> None:
        super().__init__(NAME, "rfc3987-syntax, imported on first use (tearline.iri_grammar)")
        if search_locations is not None:
            self.__path__ = search_locations  # its submodules still import as themselves
        self._real: ModuleType | None = None

    def _load(self) -> ModuleType:
        with _lock:
            if self._real is None:
                if sys.modules.get(NAME) is self:
                    del sys.modules[NAME]
                try:
                    self._real = importlib.import_module(NAME)
                except BaseException:
                    sys.modules.setdefault(NAME, self)
                    raise
            return self._real

    def is_valid_syntax(self, term: str, value: str) -> Any:
        """What ``rfc3987_syntax.is_valid_syntax`` says: jsonschema's ``iri`` checkers call it."""
        return self._load().is_valid_syntax(term, value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._load(), name)


def defer() -> None:
    """Before jsonschema (or stix2-validator, which imports it) is imported: let the IRI grammar
    be built when an ``iri`` is first checked rather than at import. Does nothing when
    jsonschema is imported already, rfc3987-syntax is imported or not installed."""
    if "jsonschema" in sys.modules or NAME in sys.modules:
        return
    try:
        spec = find_spec(NAME)
    except (ImportError, ValueError):
        return
    if spec is None:
        return
    if _absent("lark"):  # jsonschema would find it cannot import and leave `iri` unchecked
        return
    with _lock:
        sys.modules.setdefault(NAME, _Deferred(spec.submodule_search_locations))


def _absent(module: str) -> bool:
    try:
        return find_spec(module) is None
    except (ImportError, ValueError):
        return True
