"""The one CLI package: every command group says an error with the one ``fail``, takes each shared
option from the one definition in ``clients.cli.common``, and publishes through the SDK.

AST scans of the sources, so a copy of ``fail``, an option defined anew (``--root`` meaning a
pinned root here and a document there) or sealing done in a command is caught where it is
written, before any command runs.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

ROOT = Path(__file__).parents[2]
COMMON = ROOT / "clients/cli/common.py"
#: Every module that declares commands: the package's groups and the two plugins.
CLI_MODULES: Final = sorted(
    [*(ROOT / "clients/cli").glob("*.py"), ROOT / "broker/cli.py", ROOT / "gateway/cli.py"]
)
#: Each shared option, by the flag it declares and the parameter name the commands give it.
SHARED: Final = {
    "--broker": "broker",
    "--identity": "identity",
    "--json": "as_json",
    "--root": "root",
    "--memory": "memory",
    "--policies": "policies",
    "--label": "label",
    "--suite": "suite",
}


def _python_files() -> list[Path]:
    return sorted(
        p for folder in ("clients", "broker", "gateway") for p in (ROOT / folder).rglob("*.py")
    )


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The functions of a module, nested ones among them, and not the methods of its classes
    (a connection's ``fail(exc)`` is not a command's)."""
    methods = {
        id(m)
        for c in ast.walk(tree)
        if isinstance(c, ast.ClassDef)
        for m in c.body
        if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and id(n) not in methods
    ]


def test_one_fail_for_every_command() -> None:
    defined = [
        str(p.relative_to(ROOT))
        for p in _python_files()
        for function in _functions(ast.parse(p.read_text()))
        if function.name.lstrip("_") == "fail"
    ]
    assert defined == ["clients/cli/common.py"]


def _option_flags(call: ast.Call) -> list[str]:
    return [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]


def test_each_shared_option_is_declared_once_in_common() -> None:
    declared: dict[str, list[str]] = {}
    for path in [*CLI_MODULES, *_python_files()]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "Option"
            ):
                for flag in set(_option_flags(node)) & SHARED.keys():
                    declared.setdefault(flag, []).append(str(path.relative_to(ROOT)))
    assert {flag: sorted(set(where)) for flag, where in declared.items()} == {
        flag: ["clients/cli/common.py"] for flag in SHARED
    }


def test_no_command_declares_a_shared_option_inline() -> None:
    # typer names an option after its parameter: `suite: Annotated[str, typer.Option(...)]`
    # would declare --suite anew without the flag ever being written.
    inline = [
        f"{path.relative_to(ROOT)}:{arg.lineno} {arg.arg}"
        for path in CLI_MODULES
        if path != COMMON
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef)
        for arg in node.args.args + node.args.kwonlyargs
        if arg.arg in SHARED.values()
        and isinstance(arg.annotation, ast.Subscript)
        and ast.unparse(arg.annotation.value) == "Annotated"
    ]
    assert inline == []


def test_the_commands_seal_nothing_themselves() -> None:
    # `tearline publish` shows the SDK's release and has the SDK seal and post it.
    sealing = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in CLI_MODULES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and node.module == "tearline.clients.protocol.envelope"
        and any(a.name == "seal" for a in node.names)
    ]
    assert sealing == []
