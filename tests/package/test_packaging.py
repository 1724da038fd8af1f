"""What ``pip install tearline`` puts on a machine: one import root, and extras that match who
installs what (issue 17). The wheel is built from a copy of this checkout as pip builds it; the
heavy test installs it with each extra into a fresh virtual environment of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What is not part of a source tree pip builds from (caches, environments, local data).
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", "*.egg-info", "build", "dist", "data", "__pycache__", ".*_cache",
    "results", "tearline-world",
)  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES, symlinks=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp / "dist"), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = (tmp / "dist").glob("tearline-*.whl")
    return built


def test_the_wheel_installs_one_import_root(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"tearline", next(t for t in top if t.endswith(".dist-info"))}
    # The folders' packages are in it under the root, with the broker's schemas.
    for module in ("clients/partner.py", "broker/store/__init__.py", "gateway/taxii.py"):
        assert f"tearline/{module}" in names
    assert any(n.startswith("tearline/broker/policy/schemas/") for n in names)
    # The store's Lua scripts, package data it reads at import.
    for script in ("ingest.lua", "release.lua", "log_append.lua"):
        assert f"tearline/broker/store/scripts/{script}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        declared = archive.read(entry_points).decode()
    assert "tearline = tearline.clients.cli:main" in declared
    for line in declared.splitlines():
        if "=" in line:
            assert line.split("=", 1)[1].strip().startswith("tearline."), line


# (extra, a command that must work, a module that must not be installed, a command that must
# say which extra it needs)
EXTRAS = [
    pytest.param("", ["keygen", "--help"], "fastapi", ["serve"], id="sdk-alone"),
    pytest.param("", ["keygen", "--help"], "uvicorn", ["gateway", "serve"], id="sdk-no-gateway"),
    pytest.param("gateway", ["gateway", "serve", "--help"], "redis", ["serve"], id="gateway"),
    pytest.param("broker", ["serve", "--help"], "stix2", ["policy", "check"], id="broker"),
]


@pytest.mark.heavy
@pytest.mark.parametrize(("extra", "works", "absent", "needs"), EXTRAS)
def test_each_extra_installs_into_its_own_environment(
    wheel: Path, tmp_path: Path, extra: str, works: list[str], absent: str, needs: list[str]
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    spec = f"{wheel}[{extra}]" if extra else str(wheel)
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "-c", ROOT / "requirements.lock", spec],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    # A folder of the user's own, holding modules named like the checkout's folders.
    work = tmp_path / "work"
    work.mkdir()
    for name in ("clients", "broker", "gateway"):
        (work / f"{name}.py").write_text(f"raise SystemExit('the user {name}.py was imported')\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TEARLINE_", "PYTHON"))}

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*map(str, args)], capture_output=True, text=True, cwd=work, env=clean, timeout=120,
            check=False,
        )  # fmt: skip

    imported = run(python, "-c", "from tearline import AsyncPartner, Label; print('ok')")
    assert imported.stdout.strip() == "ok", imported.stderr
    found = run(python, "-c", f"import importlib.util as u; print(u.find_spec('{absent}'))")
    assert found.stdout.strip() == "None", f"{absent} came with tearline[{extra}]"
    tearline = env_dir / "bin" / "tearline"
    assert run(tearline, "--help").returncode == 0
    done = run(tearline, *works)
    assert done.returncode == 0, done.stderr
    refused = run(tearline, *needs)
    if extra == "broker":  # every command is there; policy check just wants its folder
        assert "pip install" not in refused.stderr, refused.stderr
        return
    assert refused.returncode == 2
    wanted = "gateway" if "gateway" in needs else "broker"
    assert f"pip install 'tearline[{wanted}]'" in refused.stderr, refused.stderr
