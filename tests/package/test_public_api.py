"""The public API is what ``__all__`` says, and the layout rules of DESIGN §1 hold."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Final

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


#: Every module that says it is pure, held to it by the tests below: no I/O library imported, no
#: clock, file, environment or terminal touched (the caller passes ``now`` and the bytes), and of
#: Tearline only other pure modules imported. Randomness (keys, nonces, salts) is allowed: it is
#: an input no caller could pass better. Logging is too: a diagnostic, not a result.
PURE_MODULES: list[Path] = sorted(
    {
        # The protocol and the releasability engine partner nodes run.
        *_python_files("clients/protocol"),
        *_python_files("clients/policy"),
        # The governance core; node.py beside it is the I/O edge a node checks its broker with.
        *(p for p in _python_files("clients/governance") if p.name != "node.py"),
        *_python_files("clients/stix"),
        ROOT / "clients/errors.py",
        ROOT / "clients/lazy.py",
        ROOT / "clients/backoff.py",
        ROOT / "clients/httpsig.py",  # signing requests
        # The broker's policy from bytes; folder.py reads them, load.py reads them and the clock.
        *(ROOT / "broker/policy" / n for n in ("__init__.py", "engine.py", "fingerprint.py")),
        *(ROOT / "broker/policy" / n for n in ("governed.py", "check.py", "why.py", "yamlfile.py")),
        ROOT / "broker/signatures.py",  # verifying requests; auth.py remembers nonces in Redis
        ROOT / "broker/ratelimit.py",
        # The gateway's core: store.py, app.py, sync.py and configfile.py are its edge.
        *(ROOT / "gateway" / n for n in ("taxii.py", "config.py", "auth.py")),
    }
)
#: The one impure module a pure one may import: the JSON schemas shipped in the package, read
#: once, fixed at installation like the code itself (never the operator's files).
PURE_MAY_IMPORT: Final = {
    ROOT / "broker/policy/schema.py",
    # It moves when jsonschema's IRI grammar is built (to its first use), not what is checked.
    ROOT / "clients/iri_grammar.py",
}

FORBIDDEN_IN_PURE_CODE = (
    *("redis", "httpx", "httpx_sse", "fastapi", "starlette", "uvicorn", "socket", "ssl"),
    *("asyncio", "threading", "multiprocessing", "concurrent", "subprocess", "signal", "select"),
    *("time", "sqlite3", "shutil", "tempfile", "glob", "fileinput", "io", "resource"),
    *("urllib.request", "http.client", "importlib.resources", "prometheus_client"),
    *("typer", "rich", "click"),
)
#: pathlib's pure paths compute names; its concrete ``Path`` reads and writes files.
ALLOWED_FROM_PATHLIB = {"PurePath", "PurePosixPath", "PureWindowsPath"}
#: Reading the clock, the file system, the environment or the terminal, called or passed on
#: (a ``clock=time.monotonic`` default reads the clock as surely as a call).
FORBIDDEN_NAMES_IN_PURE_CODE = {
    *("open", "print", "input", "breakpoint"),
    *("datetime.now", "datetime.utcnow", "datetime.today", "date.today"),
    *("datetime.datetime.now", "datetime.datetime.utcnow", "datetime.date.today"),
    *("time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns", "time.perf_counter"),
    *("time.sleep", "time.localtime", "time.gmtime"),
    *("os.environ", "os.environb", "os.getenv", "os.putenv", "os.getcwd", "os.chdir"),
    *("os.open", "os.read", "os.write", "os.close", "os.fstat", "os.stat", "os.lstat"),
    *("os.scandir", "os.listdir", "os.walk", "os.remove", "os.unlink", "os.rename"),
    *("os.replace", "os.makedirs", "os.mkdir", "os.system", "os.popen", "os.fsync"),
    *("sys.stdin", "sys.stdout", "sys.stderr", "sys.argv", "sys.exit"),
}
#: Methods that only do I/O, whatever object they are called on.
FORBIDDEN_METHODS_IN_PURE_CODE = {
    *("read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "mkdir"),
    *("unlink", "rmdir", "touch", "expanduser", "resolve", "exists", "is_file", "is_dir"),
}


def _module_of(name: str, modules: dict[str, Path]) -> Path | None:
    """The file of the Tearline module ``name``, or of its closest enclosing package."""
    while name:
        if name in modules:
            return modules[name]
        name = name.rpartition(".")[0]
    return None


def _purity_violations(path: Path) -> list[str]:
    """What in ``path`` breaks the purity contract, one line each; empty if nothing does."""
    tree = ast.parse(path.read_text())
    modules = _module_files()
    pure = set(PURE_MODULES) | PURE_MAY_IMPORT
    found: list[str] = []
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        imported: list[str] = []
        if isinstance(node, ast.Import):
            imported = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # ``from package import module`` imports the module; the package's __init__ runs
            # too, and Tearline's hold a docstring or names imported on first use only.
            submodules = [f"{node.module}.{a.name}" for a in node.names]
            imported = [] if set(submodules) <= modules.keys() else [node.module]
            found += [
                f"{where}: from {node.module} import {a.name}"
                for a in node.names
                if f"{node.module}.{a.name}" in FORBIDDEN_NAMES_IN_PURE_CODE
                or (node.module == "pathlib" and a.name not in ALLOWED_FROM_PATHLIB)
            ]
            imported += [f"{node.module}.{a.name}" for a in node.names]
        for name in imported:
            if any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN_IN_PURE_CODE):
                found.append(f"{where}: imports {name}")
            target = _module_of(name, modules) if name.startswith("tearline.") else None
            if target is not None and target not in pure:
                found.append(f"{where}: imports {name}, which is not pure")
        if isinstance(node, ast.Name | ast.Attribute):
            text = ast.unparse(node)
            if text in FORBIDDEN_NAMES_IN_PURE_CODE or (
                isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_METHODS_IN_PURE_CODE
            ):
                found.append(f"{where}: {text}")
    return sorted(set(found))


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_protocol_and_engine_modules_do_no_io(path: Path) -> None:
    assert _purity_violations(path) == []


#: How a module's docstring says the module is pure ("Pure: bytes in, …", "…, pure (…)", "All
#: pure."), as opposed to naming the pure module it is the edge of ("the pure :mod:`…`").
_SAYS_PURE: Final = re.compile(r"\bPure[.:]|[,(]\s*pure\b|\bAll pure\b")


def test_every_module_that_says_it_is_pure_is_held_to_it() -> None:
    # The docstring is the promise a reader relies on; the list above is what is checked.
    said = [
        str(p.relative_to(ROOT))
        for folder in ("clients", "broker", "gateway")
        for p in _python_files(folder)
        if _SAYS_PURE.search(ast.get_docstring(ast.parse(p.read_text())) or "")
    ]
    assert said
    assert [p for p in said if ROOT / p not in PURE_MODULES] == []


def test_the_contract_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import redis\nfrom pathlib import Path\nimport tearline.broker.store\n"
        "from datetime import UTC, datetime\n"
        "def f(clock=time.monotonic):\n    return datetime.now(UTC), Path('x').read_text()\n"
    )
    assert {v.partition(": ")[2] for v in _purity_violations(bad)} == {
        "Path('x').read_text",
        "datetime.now",
        "from pathlib import Path",
        "imports redis",
        "imports tearline.broker.store, which is not pure",
        "time.monotonic",
    }


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
