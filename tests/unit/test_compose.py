"""docker-compose.yml and the Dockerfile (§9), checked without a Docker engine.

Validity is Compose's own verdict: ``docker-compose config -q`` (Debian's ``docker-compose``
package; CI installs it) parses and validates the file against the Compose schema, including
references between services and volumes, and needs no daemon. On top of that, the invariants
that are ours, not Compose's: Redis keeps an AOF on a volume, the policies are mounted
read-only, the broker waits for a healthy Redis, both have health checks, the image serves.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from broker import cli as broker_cli
from broker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

# Debian's docker-compose is v1 (bookworm) or v2 (trixie); a v2 CLI plugin runs standalone too.
_COMPOSE_CANDIDATES = (
    "/usr/libexec/docker/cli-plugins/docker-compose",
    "/usr/lib/docker/cli-plugins/docker-compose",
)


def _compose_binary() -> str:
    found = shutil.which("docker-compose") or next(
        (p for p in _COMPOSE_CANDIDATES if os.access(p, os.X_OK)), None
    )
    if found is None:
        message = "docker-compose is not installed: apt-get install docker-compose"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: its absence there is a broken CI, not a skip
        pytest.skip(message)
    return found


def _compose_config(compose_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    return subprocess.run(
        [
            _compose_binary(),
            "--file",
            str(compose_file),
            "--project-directory",
            str(compose_file.parent),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def _service(name: str) -> dict[str, Any]:
    service = _compose()["services"][name]
    assert isinstance(service, dict)
    return service


def _argv(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _option(argv: list[str], name: str) -> str | None:
    """The value of ``--name value`` in a redis-server command line, or None."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) for each volume, short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            mounts.append((source, target, "ro" in (mode[0].split(",") if mode else [])))
        else:
            mounts.append(
                (volume["source"], volume["target"], bool(volume.get("read_only", False)))
            )
    return mounts


def _health_test(service: dict[str, Any]) -> list[str]:
    health = service.get("healthcheck")
    assert isinstance(health, dict), "no healthcheck"
    assert not health.get("disable", False)
    test = _argv(health["test"])
    assert test[0] in {"CMD", "CMD-SHELL"}, test
    return test[1:]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


# --- Compose's own verdict ----------------------------------------------------------------------


def test_compose_file_is_valid() -> None:
    result = _compose_config(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("condition: service_healthy", "condition: service_healty"),
        ("    healthcheck:\n      test: [", "    healthchek:\n      test: ["),
        ("\nvolumes:\n  redis-data:\n", "\nvolumes:\n"),
    ],
    ids=["bad-condition", "unknown-key", "undeclared-volume"],
)
def test_compose_validation_is_real(tmp_path: Path, before: str, after: str) -> None:
    # The same check must fail on a broken copy, or a passing check above proves nothing.
    text = COMPOSE_FILE.read_text()
    assert before in text
    intact = tmp_path / "intact" / "docker-compose.yml"
    intact.parent.mkdir()
    intact.write_text(text)
    assert _compose_config(intact).returncode == 0, "the copy fails for another reason"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(before, after, 1))
    result = _compose_config(broken)
    assert result.returncode != 0, f"docker-compose accepted a broken file:\n{broken.read_text()}"


# --- our invariants -----------------------------------------------------------------------------


def test_redis_keeps_an_aof_on_a_named_volume() -> None:
    redis = _service("redis")
    name, _, tag = str(redis["image"]).partition(":")
    assert name == "redis"
    assert int(tag.split(".")[0]) >= 7, "pin a major version of at least 7"
    argv = _argv(redis["command"])
    assert argv[0] == "redis-server"
    assert _option(argv, "--appendonly") == "yes"
    assert _option(argv, "--appendfsync") in {"everysec", "always"}
    data = [source for source, target, _ in _mounts(redis) if target == "/data"]
    assert data, "redis /data is not on a volume"
    assert data[0] in (_compose().get("volumes") or {}), "redis data must be a named volume"


def test_policies_are_mounted_read_only_where_the_broker_reads_them() -> None:
    broker = _service("broker")
    env = _environment(broker)
    policies = [(s, ro) for s, t, ro in _mounts(broker) if t == env["TEARLINE_POLICIES_DIR"]]
    assert policies == [("./policies", True)]


def test_broker_uses_the_compose_redis_once_it_is_healthy() -> None:
    broker = _service("broker")
    assert _environment(broker)["REDIS_URL"] == "redis://redis:6379/0"
    depends = broker["depends_on"]
    assert isinstance(depends, dict), "short depends_on syntax does not wait for health"
    assert depends["redis"]["condition"] == "service_healthy"
    assert broker["build"] in (".", {"context": "."})
    assert any(str(p).split(":")[-1] == "8000" for p in broker["ports"])


def test_both_services_have_health_checks() -> None:
    assert "redis-cli ping" in " ".join(_health_test(_service("redis")))
    assert "/healthz" in " ".join(_health_test(_service("broker")))


def test_every_tearline_variable_is_a_setting() -> None:
    # A misspelt TEARLINE_* variable is silently ignored by the settings loader: catch it here.
    names = {f"TEARLINE_{field.upper()}" for field in Settings.model_fields}
    for key in _environment(_service("broker")):
        if key.startswith("TEARLINE_"):
            assert key in names, f"{key} is not a Settings field"
    for key in _dockerfile_env():
        if key.startswith("TEARLINE_"):
            assert key in names, f"Dockerfile: {key} is not a Settings field"


# --- the Dockerfile -----------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return [(word.upper(), rest.strip()) for word, _, rest in (i.partition(" ") for i in logical)]


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in _instructions():
        if instruction == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_dockerfile_serves_as_a_non_root_user() -> None:
    instructions = _instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    names = [name for name, _ in instructions]
    users = [args for name, args in instructions if name == "USER"]
    assert users, "no USER: the broker would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert names.index("USER") < names.index("CMD")
    assert any(
        name == "RUN" and "pip install" in a and ".[broker]" in a for name, a in instructions
    )

    cmd = json.loads([args for name, args in instructions if name == "CMD"][-1])
    assert cmd[:2] == ["tearline", "serve"]
    assert _option(cmd, "--host") == "0.0.0.0"
    assert not [args for name, args in instructions if name == "ENTRYPOINT"]

    health = [args for name, args in instructions if name == "HEALTHCHECK"]
    assert len(health) == 1
    check = json.loads(health[0][health[0].index("CMD") + 3 :].strip())
    assert check[:2] == ["python", "-c"]
    assert "urllib" in check[2]
    assert "/healthz" in check[2]


def test_dockerfile_copies_what_exists_and_the_compose_paths_match() -> None:
    for name, args in _instructions():
        if name == "COPY" and not args.startswith("--from"):
            for source in shlex.split(args)[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    env = _dockerfile_env()
    compose_env = _environment(_service("broker"))
    assert env["TEARLINE_POLICIES_DIR"] == compose_env["TEARLINE_POLICIES_DIR"]
    assert env["TEARLINE_DATA_DIR"] == compose_env["TEARLINE_DATA_DIR"]
    data = [s for s, t, ro in _mounts(_service("broker")) if t == env["TEARLINE_DATA_DIR"]]
    assert data, "the broker's data folder (its receipt key) is not on a volume"
    assert not data[0].startswith((".", "/")), "the broker key needs a named volume"


def test_the_image_command_exists() -> None:
    # CMD runs `tearline serve`: the console script and the operator command it dispatches to.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["tearline"] == "clients.cli:main"
    assert pyproject["project"]["entry-points"]["tearline.commands"]["broker"] == (
        "broker.cli:register"
    )
    app = typer.Typer()
    broker_cli.register(app)
    assert "serve" in {c.name for c in app.registered_commands}
