"""The README's quickstart, run start to finish as a reader would run it.

The code blocks marked ``sh quickstart`` and ``python quickstart`` run in order in one shell
(so its ``cd`` and ``export`` carry on, and a Python block runs where the shell stands); the one
``sh quickstart-serve`` block is the broker, started as its own process as the reader starts it
in a second terminal, then stopped with SIGTERM. Only the port is changed (8000 to a free one),
and the broker uses the test session's real Redis instead of starting its own.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from tearline.broker.embedded import free_port
from tests.processes import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(sh|python) (quickstart|quickstart-serve)\n(.*?)^```\s*$", re.M | re.S)
MAIN = "import sys; sys.argv[0] = 'tearline'; from tearline.clients.cli import main; main()"
PORT = "8000"


def readme_blocks() -> list[tuple[str, str, str]]:
    """(language, kind, code) of each quickstart block, in the README's order."""
    return [(m[1], m[2], m[3]) for m in BLOCK.finditer(README.read_text(encoding="utf-8"))]


def as_shell(blocks: list[tuple[str, str, str]], port: int) -> str:
    parts = []
    for language, _, code in blocks:
        code = code.replace(PORT, str(port))
        parts.append(code if language == "sh" else f"python - <<'PYTHON'\n{code}PYTHON\n")
    return "".join(parts)


class ReadmeBroker(BrokerProcess):
    """``tearline serve`` exactly as the README's serve block says, plus ``--port``."""

    def __init__(self, line: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.args = shlex.split(line)

    def command(self) -> list[str]:
        assert self.args[:2] == ["tearline", "serve"], self.args
        return [sys.executable, "-c", MAIN, *self.args[1:], "--port", str(self.port)]


def shims(folder: Path) -> Path:
    """``tearline`` and ``python`` on PATH, both this test run's interpreter."""
    folder.mkdir()
    for name, run in (("tearline", f'-c "{MAIN}"'), ("python", "")):
        path = folder / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" {run} "$@"\n')
        path.chmod(0o755)
    return folder


def shell(script: str, cwd: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEARLINE_")}
    env.pop("COLUMNS", None)
    env.pop("REDIS_URL", None)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_readme_marks_a_complete_quickstart() -> None:
    kinds = [kind for _, kind, _ in readme_blocks()]
    assert kinds.count("quickstart-serve") == 1
    assert kinds.index("quickstart-serve") > 0  # something to serve is made first
    assert kinds[-1] == "quickstart"


def test_readme_quickstart_runs_start_to_finish(
    redis_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = readme_blocks()
    at = [kind for _, kind, _ in blocks].index("quickstart-serve")
    (serve_line,) = [line for line in blocks[at][2].splitlines() if line.strip()]
    after = blocks[at + 1 :]
    assert any(f"127.0.0.1:{PORT}" in code for _, _, code in after)  # the port to change

    work = tmp_path / "reader"
    work.mkdir()
    bin_dir = shims(tmp_path / "bin")
    port = free_port()
    first = shell(as_shell(blocks[:at], port), work, bin_dir)
    assert first.returncode == 0, first.stderr
    # What `init` prints next is what the README says to run next.
    readme_lines = {line.strip() for _, _, code in blocks for line in code.splitlines()}
    told = [
        line.strip()
        for line in first.stdout.splitlines()
        if line.strip().startswith(("tearline ", "cd ", "export "))
    ]
    assert told
    assert set(told) <= readme_lines, set(told) - readme_lines

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    monkeypatch.chdir(work)  # the serve block's paths are relative to where the reader stands
    broker = ReadmeBroker(
        serve_line,
        redis_url=redis_server.url,
        policies=work / "not-used",  # the command line's --policies wins
        data_dir=work / "not-used",
        port=port,
        log_path=tmp_path / "broker.log",
    )
    broker.start()
    try:
        rest = shell(as_shell(after, port), work, bin_dir)
    finally:
        broker.terminate()
        code = broker.wait(timeout_s=30)
    assert rest.returncode == 0, f"{rest.stdout}\n{rest.stderr}\n{broker.log()}"
    assert code == 0, broker.log()

    out = rest.stdout
    assert "→ USA under gbr-usa" in out
    assert "→ EST under gbr-est" in out
    assert "not sent to DEU: NO_AGREEMENT" in out
    inbox = work / "tearline-world" / "inbox"
    names = sorted(p.name for p in inbox.iterdir())
    assert len(names) == 2
    assert names[0].endswith(".json")
    assert names[1].endswith(".label.json")
    assert stat.S_IMODE(inbox.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in inbox.iterdir()} == {0o600}
    for name in names:
        assert name in out  # `ls inbox`
    assert re.search(r"│ DEU\s+│ deny\s+│ -\s+│ NO_AGREEMENT", out)  # policy explain
    assert re.search(r"^sent \S+ to EST, USA$", out, re.M)  # the Python block
    assert "EST received" in out
    assert "registry version 2, unsigned; added NOR" in out
    assert "published registry version 2 to policies/governance/registry.json" in out
