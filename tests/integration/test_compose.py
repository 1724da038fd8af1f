"""docker-compose.yml and the Dockerfile (§9), checked without a Docker engine.

Validity is Compose's own verdict: ``docker-compose config -q`` (Debian's ``docker-compose``
package; CI installs it) parses and validates the file against the Compose schema, including
references between services and volumes, and needs no daemon. On top of that, the invariants
that are ours, not Compose's: Redis keeps an AOF on a volume, the policies are mounted
read-only, the broker waits for a healthy Redis, both have health checks, the image serves.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer

from tearline.broker import cli as broker_cli
from tearline.broker.settings import Settings
from tests.dockerfile import (
    COMPOSE_FILE,
    REPO,
    cmd,
    compose,
    context_files,
    copied_top_level,
    dockerfile_env,
    environment,
    health_test,
    healthcheck,
    instructions,
    interpolate,
    mounts,
    service,
    steps,
)

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


def _argv(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _option(argv: list[str], name: str) -> str | None:
    """The value of ``--name value`` in a redis-server command line, or None."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


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
    redis = service("redis")
    name, _, tag = str(redis["image"]).partition(":")
    assert name == "redis"
    assert int(tag.split(".")[0]) >= 7, "pin a major version of at least 7"
    argv = _argv(redis["command"])
    assert argv[0] == "redis-server"
    assert _option(argv, "--appendonly") == "yes"
    assert _option(argv, "--appendfsync") in {"everysec", "always"}
    data = [source for source, target, _ in mounts(redis) if target == "/data"]
    assert data, "redis /data is not on a volume"
    assert data[0] in (compose().get("volumes") or {}), "redis data must be a named volume"


def test_policies_are_mounted_read_only_where_the_broker_reads_them() -> None:
    broker = service("broker")
    env = environment(broker)
    policies = [(s, ro) for s, t, ro in mounts(broker) if t == env["TEARLINE_POLICIES_DIR"]]
    assert policies == [("./policies", True)]


def test_broker_uses_the_compose_redis_once_it_is_healthy() -> None:
    broker = service("broker")
    assert environment(broker)["REDIS_URL"] == "redis://redis:6379/0"
    depends = broker["depends_on"]
    assert isinstance(depends, dict), "short depends_on syntax does not wait for health"
    assert depends["redis"]["condition"] == "service_healthy"
    assert broker["build"] in (".", {"context": "."})
    assert any(str(p).split(":")[-1] == "8000" for p in broker["ports"])


def test_both_services_have_health_checks() -> None:
    assert "redis-cli ping" in " ".join(health_test(service("redis")))
    assert "/healthz" in " ".join(health_test(service("broker")))


def test_every_tearline_variable_is_a_setting() -> None:
    # A misspelt TEARLINE_* variable is silently ignored by the settings loader: catch it here.
    names = {f"TEARLINE_{field.upper()}" for field in Settings.model_fields}
    for key in environment(service("broker")):
        if key.startswith("TEARLINE_"):
            assert key in names, f"{key} is not a Settings field"
    for key in dockerfile_env():
        if key.startswith("TEARLINE_"):
            assert key in names, f"Dockerfile: {key} is not a Settings field"


# --- the Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_serves_as_a_non_root_user() -> None:
    steps = instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    names = [name for name, _ in steps]
    users = [args for name, args in steps if name == "USER"]
    assert users, "no USER: the broker would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert names.index("USER") < names.index("CMD")
    assert any(name == "RUN" and "pip install" in a and ".[broker]" in a for name, a in steps)

    command = cmd()
    assert command[:2] == ["tearline", "serve"]
    assert _option(command, "--host") == "0.0.0.0"
    assert not [args for name, args in steps if name == "ENTRYPOINT"]

    check = healthcheck()
    assert check[:2] == ["python", "-c"]
    assert "urllib" in check[2]
    assert "/healthz" in check[2]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _distribution_packages() -> set[str]:
    """The top-level folders the distribution's packages come from, found the way setuptools'
    packages.find finds them: folders with an __init__.py whose name an include pattern
    matches, and the folders their subpackages link to (``tearline/broker`` → ``broker/``)."""
    find = _pyproject()["tool"]["setuptools"]["packages"]["find"]
    assert set(find) <= {"include", "exclude"}, f"packages.find options not read here: {find}"
    roots = {
        path.parent.name
        for path in REPO.glob("*/__init__.py")
        if any(fnmatch.fnmatchcase(path.parent.name, p) for p in find.get("include", ["*"]))
        and not any(fnmatch.fnmatchcase(path.parent.name, p) for p in find.get("exclude", []))
    }
    linked = {
        link.resolve().relative_to(REPO).parts[0]
        for root in roots
        for link in (REPO / root).iterdir()
        if link.is_symlink()
    }
    return roots | linked


def _pip_install_step() -> PurePosixPath:
    """Where the image's `pip install .` runs (one does)."""
    runs = [(args, wd) for kind, args, wd in steps() if kind == "RUN" and "pip install" in args]
    assert len(runs) == 1, runs
    args, workdir = runs[0]
    assert re.search(r"""(^|\s)["']?\.\[broker\]""", args), f"not an install of .: {args}"
    assert "-c requirements.lock" in args
    return workdir


def test_dockerfile_copies_every_package_the_distribution_includes() -> None:
    # The image once copied clients/ and broker/ but not gateway/: pip installed what it found,
    # the gateway's entry point stayed declared, and `tearline serve` failed in the container.
    packages = _distribution_packages()
    assert {"tearline", "clients", "broker", "gateway"} <= packages
    copied = copied_top_level()
    workdir = _pip_install_step()
    for package in sorted(packages):
        assert package in copied, f"the Dockerfile does not COPY {package}/ (packages.find has it)"
        assert copied[package] == workdir / package, f"{package}/ is not where pip builds from"
        # .dockerignore must not take its sources out of the build context either.
        sources = {p for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts}
        in_context = {REPO / package / p for p in context_files(package)}
        assert sources <= in_context, f"left out by .dockerignore: {sorted(sources - in_context)}"
    project = _pyproject()["project"]
    needed = ["pyproject.toml", project["readme"], "requirements.lock"]
    for name in needed:
        assert copied.get(name) == workdir / name, f"{name} is not copied where pip runs"
    for pattern_list in _pyproject()["tool"]["setuptools"]["package-data"].values():
        for pattern in pattern_list:
            assert list(REPO.glob(f"*/{pattern}")), pattern
    # Every command the metadata declares lives in a copied package.
    targets = [*project["scripts"].values(), *project["entry-points"]["tearline.commands"].values()]
    for target in targets:
        assert target.split(".")[0] == "tearline", target
        assert target.split(".")[1] in packages, target
    # Sources first, then the install, then nothing it needs is copied after it.
    order = [(k, a) for k, a, _ in steps() if k in {"COPY", "RUN"}]
    install = next(i for i, (k, a) in enumerate(order) if k == "RUN" and "pip install" in a)
    for kind, step in order[install:]:
        if kind == "COPY":
            assert not set(step.sources) & {*packages, *needed}, step


def test_dockerfile_fails_its_build_when_a_plugin_does_not_load() -> None:
    # A package declared but not installed is a failed `docker build`, not a container that
    # starts and answers every command with a stand-in.
    runs = [args for kind, args, _ in steps() if kind == "RUN"]
    install = next(i for i, a in enumerate(runs) if "pip install" in a)
    checks = [a for a in runs[install + 1 :] if "tearline.commands" in a]
    assert checks, "no RUN loads the tearline.commands entry points after pip install"
    assert checks[0].startswith("python -I "), "-I: from site-packages, not the sources in /app"
    assert ".load()" in checks[0]


def test_compose_runs_the_image_as_the_dockerfile_sets_it_up() -> None:
    broker = service("broker")
    image_env = dockerfile_env()
    compose_env = environment(broker)
    # Compose keeps the image's command and user: no override to drift from the Dockerfile.
    assert "command" not in broker or _argv(broker["command"]) == cmd()
    assert "entrypoint" not in broker
    assert "user" not in broker
    # The paths and the default public URL are the image's.
    for key in ("TEARLINE_POLICIES_DIR", "TEARLINE_DATA_DIR"):
        assert compose_env[key] == image_env[key], key
    assert interpolate(compose_env["TEARLINE_PUBLIC_URL"]) == image_env["TEARLINE_PUBLIC_URL"]
    # The port: what the broker listens on, what the image exposes, what compose publishes.
    port = compose_env.get("TEARLINE_PORT", image_env["TEARLINE_PORT"])
    exposed = [args for name, args in instructions() if name == "EXPOSE"]
    assert exposed == [port]
    assert [str(p).split(":")[-1] for p in broker["ports"]] == [port]
    # The same health check as the image's.
    assert health_test(broker) == healthcheck()
    # The operator's policies land where the image put its example set, and the data volume
    # on the folder the image made for the user it runs as (a new named volume takes the
    # image folder's owner: the broker can write its key there).
    copied = copied_top_level()
    assert copied["policies"] == PurePosixPath(image_env["TEARLINE_POLICIES_DIR"])
    user = [args for name, args in instructions() if name == "USER"][-1]
    data = image_env["TEARLINE_DATA_DIR"]
    made = [
        args
        for kind, args, _ in steps()
        if kind == "RUN" and f"chown {user}:" in args and data in args.split()
    ]
    assert made, f"no RUN makes {data} the {user} user's"
    assert [t for _, t, _ in mounts(broker) if t == data], f"{data} is not on a volume"
    # Redis by its service name, on the port its image listens on.
    url = urlsplit(compose_env["REDIS_URL"])
    assert (url.hostname, url.port or 6379) == ("redis", 6379)
    assert "redis" in compose()["services"]
    assert "ports" not in service("redis"), "Redis is reached over the compose network only"


def test_the_image_command_exists() -> None:
    # CMD runs `tearline serve`: the console script and the operator command it dispatches to.
    pyproject = _pyproject()
    assert pyproject["project"]["scripts"]["tearline"] == "tearline.clients.cli:main"
    assert pyproject["project"]["entry-points"]["tearline.commands"]["broker"] == (
        "tearline.broker.cli:register"
    )
    app = typer.Typer()
    broker_cli.register(app)
    assert "serve" in {c.name for c in app.registered_commands}


def test_prometheus_can_scrape_the_broker_and_partners_cannot() -> None:
    # The unauthenticated metrics listener is on the compose network only: its port is set,
    # bound for other containers, and not published; the published port is the API's alone.
    broker = service("broker")
    env = environment(broker)
    assert env["TEARLINE_METRICS_PORT"] == "9100"
    assert env["TEARLINE_METRICS_HOST"] == "0.0.0.0"
    assert [str(port) for port in broker.get("ports", [])] == ["8000:8000"]
