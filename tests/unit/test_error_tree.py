"""Every exception a user can see is under ``TearlineError`` and drawn in the one tree.

The tree is the docstring of :mod:`tearline.clients.errors`. This walks every module of the
package, not just ``__all__``: an error class added anywhere must take its place in the tree,
carry a machine-readable ``code``, and say in its docstring what it means.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Final

import tearline
from tearline.clients import errors
from tearline.clients.errors import TearlineError

#: Raised and caught inside one module, never seen by a caller: the envelope's opaque failure
#: (pyca's rule: every way an envelope fails to open is one error to the caller).
INTERNAL: Final = {"tearline.clients.protocol.crypto.CryptoFailure"}


def _every_error() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(tearline.__path__, "tearline."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def test_every_error_class_is_under_the_root() -> None:
    outside = [
        f"{e.__module__}.{e.__qualname__}"
        for e in _every_error()
        if not issubclass(e, TearlineError) and f"{e.__module__}.{e.__qualname__}" not in INTERNAL
    ]
    assert outside == []


def test_every_error_class_is_drawn_in_the_tree_with_a_code_and_a_meaning() -> None:
    tree = errors.__doc__ or ""
    for error in _every_error():
        if not issubclass(error, TearlineError):
            continue
        assert f" {error.__name__} " in tree, f"{error.__name__} is not drawn in the tree"
        assert (error.code and error.code != TearlineError.code) or error is TearlineError, error
        assert (error.__doc__ or "").strip(), f"{error.__name__} does not say what it means"
