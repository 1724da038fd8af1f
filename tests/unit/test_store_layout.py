"""The store's layout is in sight (issue 17): every key is named in ``keys.py`` and listed in
the package's docstring, every Lua script is a file of the package, listed there and registered,
and no module outside ``broker/store`` names a Redis key."""

from __future__ import annotations

import ast
import inspect
from importlib.resources import files
from pathlib import Path
from typing import Any

import tearline.broker.store as store
from tearline.broker.store import keys, lua
from tearline.broker.store.base import StoreBase

ROOT = Path(__file__).parents[2]
DOC = store.__doc__ or ""
# How the docstring writes each parameter of a key function.
PLACEHOLDERS = {"report_id": "id", "partner": "P", "nonce": "n", "task": "task"}


def test_every_key_is_listed_in_the_package_docstring() -> None:
    constants = [v for n, v in vars(keys).items() if n.endswith("_KEY")]
    functions = [f for n, f in vars(keys).items() if n.endswith("_key") and callable(f)]
    assert len(constants) >= 6
    assert len(functions) >= 7
    for value in constants:
        assert value in DOC, value
    for function in functions:
        params = inspect.signature(function).parameters
        example = function(*(PLACEHOLDERS[p] for p in params))
        assert example in DOC, f"{function.__name__}: {example}"
        assert function.__doc__, f"{function.__name__} says what lives there"


def test_every_script_is_a_file_listed_in_the_docstring_and_registered() -> None:
    folder = files("tearline.broker.store") / "scripts"
    on_disk = {p.name for p in folder.iterdir() if p.name.endswith(".lua")}
    assert on_disk == {f"{name}.lua" for name in lua.SCRIPTS} | {"release.lua"}
    for name in on_disk:
        assert name in DOC, name
    registered: list[str] = []

    class Recorder:
        def register_script(self, script: str) -> Any:
            registered.append(script)
            return script

    StoreBase(Recorder())  # type: ignore[arg-type]
    assert sorted(registered) == sorted(lua.SCRIPTS.values())


def test_no_module_outside_the_store_names_a_redis_key() -> None:
    store_folder = ROOT / "broker" / "store"
    found = []
    for folder in ("broker", "gateway", "clients"):
        for path in (ROOT / folder).rglob("*.py"):
            if store_folder in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
                    text = node.value if isinstance(node.value, str) else node.value.decode()
                    if text.startswith("tl:"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text}")
    assert found == []
