"""The public API is what ``__all__`` says, and the layout rules of DESIGN §1 hold."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import tearline
import tearline.clients.protocol

ROOT = Path(__file__).parents[2]
#: What the lazy ``tearline`` package holds to import its names on first use.
_MACHINERY = {"annotations", "importlib", "TYPE_CHECKING", "Any", "Final"}


@pytest.mark.parametrize("module", [tearline, tearline.clients.protocol], ids=lambda m: m.__name__)
def test_every_name_in_all_is_importable_and_nothing_public_is_left_out(module: object) -> None:
    exported = set(module.__all__)  # type: ignore[attr-defined]
    for name in exported:
        assert getattr(module, name) is not None
    public = {
        n
        for n in dir(module)
        if not n.startswith("_")
        and n not in _MACHINERY
        and not isinstance(getattr(module, n), type(ast))
    }
    assert public == exported


def test_every_error_descends_from_the_one_root() -> None:
    errors = [getattr(tearline, n) for n in tearline.__all__ if n.endswith("Error")]
    assert errors
    for error in errors:
        assert issubclass(error, tearline.TearlineError)
        assert isinstance(error.code, str)
        assert error.code


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_only_the_crypto_module_imports_cryptography_hazmat() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for folder in ("clients", "broker")
        for p in _python_files(folder)
        if any(n.startswith("cryptography") for n in _imports(p))
        and p != ROOT / "clients/protocol/crypto.py"
    ]
    assert offenders == []


def test_clients_never_import_the_broker() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in _python_files("clients")
        if any(n == "tearline.broker" or n.startswith("tearline.broker.") for n in _imports(p))
    ]
    assert offenders == []


FORBIDDEN_IN_PURE_CODE = ("redis", "httpx", "fastapi", "starlette", "pathlib", "socket", "asyncio")


@pytest.mark.parametrize(
    "path",
    [
        *_python_files("clients/protocol"),
        *_python_files("clients/policy"),
        # The governance core; node.py beside it is the I/O edge a node checks its broker with.
        *(p for p in _python_files("clients/governance") if p.name != "node.py"),
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_protocol_and_engine_modules_do_no_io(path: Path) -> None:
    imported = _imports(path)
    assert not [n for n in imported if n.split(".")[0] in FORBIDDEN_IN_PURE_CODE]
    # The clock is passed in and files are read elsewhere: no call reads either here.
    calls = {
        ast.unparse(node.func)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
    }
    forbidden = {
        "open",
        "datetime.now",
        "datetime.utcnow",
        "time.time",
        "time.time_ns",
        "date.today",
    }
    assert not calls & forbidden


def test_the_core_imports_without_the_sdks_http_stack() -> None:
    # A fresh interpreter: this one has loaded everything already.
    probe = (
        "import sys\n"
        "import tearline.clients.protocol.envelope, tearline.clients.errors\n"
        "import tearline.clients.governance.trust, tearline.clients.policy.engine\n"
        "import tearline.clients.httpsig\n"
        "print(sorted(m for m in ('httpx', 'httpx_sse', 'rich', 'typer', 'yaml', 'redis',"
        " 'fastapi') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"


def test_a_clients_module_of_the_users_own_does_not_shadow_the_sdk(tmp_path: Path) -> None:
    (tmp_path / "clients.py").write_text("raise SystemExit('the user clients.py was imported')\n")
    (tmp_path / "broker.py").write_text("raise SystemExit('the user broker.py was imported')\n")
    probe = "from tearline import AsyncPartner, Label; import tearline.broker.store; print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_no_module_is_imported_under_its_folders_name() -> None:
    # The folders clients/, broker/ and gateway/ are importable from the checkout's root too; a
    # module imported by that name would load a second time (ruff's TID251 refuses it as well).
    offenders = [
        f"{p.relative_to(ROOT)}: {n}"
        for folder in ("clients", "broker", "gateway", "tests", "bench")
        for p in _python_files(folder)
        for n in _imports(p)
        if n.split(".")[0] in ("clients", "broker", "gateway")
    ]
    assert offenders == []


def _module_files() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for folder in ("clients", "broker", "gateway"):
        for p in _python_files(folder):
            parts = [
                x for x in p.relative_to(ROOT / folder).with_suffix("").parts if x != "__init__"
            ]
            modules[".".join(["tearline", folder, *parts])] = p
    return modules


def _imported_at_load(path: Path, modules: dict[str, Path]) -> set[str]:
    """The tearline modules a module imports at its top level, for the type checker too (under
    TYPE_CHECKING: a circle the interpreter never runs is still one a reader must untangle);
    ``from package import module`` counts as the module, not the package."""
    out: set[str] = set()
    body = ast.parse(path.read_text()).body
    nodes = [*body, *(n for b in body if isinstance(b, ast.If) for n in b.body)]
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
            out |= subs or {node.module}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out & modules.keys()


def test_no_module_imports_itself_through_a_circle() -> None:
    modules = _module_files()
    graph = {m: _imported_at_load(p, modules) for m, p in modules.items()}
    circles = []
    for start in graph:  # a depth-first walk from each module back to itself
        stack, seen = [(start, [start])], set()
        while stack:
            module, path = stack.pop()
            for nxt in graph[module]:
                if nxt == start:
                    circles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert circles == []
