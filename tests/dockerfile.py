"""The Dockerfile, .dockerignore and docker-compose.yml read as Docker reads them, for the tests
that check the image without a Docker engine (tests/integration/test_compose.py, and
tests/integration/test_image.py, which builds what the Dockerfile builds in a virtualenv).

Only what this repository's files use is understood (one stage, ``COPY`` of paths without
wildcards, exec-form ``CMD`` and ``HEALTHCHECK``); anything else fails a test loudly rather than
being read wrongly.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_FILE = REPO / "docker-compose.yml"


def instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
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


def env_items(args: str) -> dict[str, str]:
    """An ENV instruction's ``KEY=value`` pairs."""
    items = {}
    for item in shlex.split(args):
        key, sep, value = item.partition("=")
        assert sep, f"ENV {args}: only the KEY=value form is read here"
        items[key] = value
    return items


def dockerfile_env(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in instructions(dockerfile):
        if instruction == "ENV":
            env |= env_items(args)
    return env


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument list; shell form is refused: it would run under
    ``/bin/sh -c`` as PID 1, which does not pass SIGTERM on to the broker."""
    argv = json.loads(args)
    assert isinstance(argv, list), f"not exec form: {args}"
    return [str(a) for a in argv]


def cmd(dockerfile: Path = DOCKERFILE) -> list[str]:
    commands = [args for name, args in instructions(dockerfile) if name == "CMD"]
    assert commands, "the Dockerfile has no CMD"
    return exec_form(commands[-1])


def healthcheck(dockerfile: Path = DOCKERFILE) -> list[str]:
    """The HEALTHCHECK's command (after its options and ``CMD``)."""
    checks = [args for name, args in instructions(dockerfile) if name == "HEALTHCHECK"]
    assert len(checks) == 1, "one HEALTHCHECK"
    options, sep, command = checks[0].partition("CMD ")
    assert sep, f"HEALTHCHECK {checks[0]}: no CMD"
    assert all(o.startswith("--") for o in options.split()), options
    return exec_form(command)


@dataclass(frozen=True)
class Copy:
    """One ``COPY src... dest`` from the build context, ``dest`` made absolute."""

    sources: tuple[str, ...]
    dest: PurePosixPath
    into_folder: bool  # dest is a folder the sources go into (``./``, or several sources)


def absolute(path: str, workdir: PurePosixPath) -> PurePosixPath:
    return workdir / path if not path.startswith("/") else PurePosixPath(path)


def steps(dockerfile: Path = DOCKERFILE) -> Iterator[tuple[str, Any, PurePosixPath]]:
    """Build steps in order: ("COPY", Copy, workdir), ("RUN", shell command, workdir),
    ("ENV", {name: value}, workdir), ("USER", name, workdir). FROM and the run-time
    instructions (CMD, HEALTHCHECK, EXPOSE) are not steps here."""
    workdir = PurePosixPath("/")
    for name, args in instructions(dockerfile):
        if name == "WORKDIR":
            workdir = absolute(args, workdir)
        elif name == "ENV":
            yield "ENV", env_items(args), workdir
        elif name == "COPY":
            words = shlex.split(args) if not args.startswith("[") else exec_form(args)
            flags = [w for w in words if w.startswith("--")]
            assert not [f for f in flags if f.startswith("--from")], "one stage is read here"
            paths = [w for w in words if not w.startswith("--")]
            *sources, dest = paths
            assert sources, f"COPY {args}"
            assert not any(set(s) & set("*?[") for s in sources), f"COPY {args}: no wildcards"
            into = dest.endswith("/") or len(sources) > 1
            yield "COPY", Copy(tuple(sources), absolute(dest, workdir), into), workdir
        elif name == "RUN":
            assert not args.startswith("["), f"RUN {args}: shell form is read here"
            yield "RUN", args, workdir
        elif name == "USER":
            yield "USER", args, workdir


def copied_top_level(dockerfile: Path = DOCKERFILE) -> dict[str, PurePosixPath]:
    """Each copied path of the build context, by its name at the top of the context, with where
    it lands in the image (for a folder, where its contents land)."""
    out: dict[str, PurePosixPath] = {}
    for kind, step, _ in steps(dockerfile):
        if kind == "COPY":
            for source in step.sources:
                out[str(PurePosixPath(source))] = landing(step, source)
    return out


def landing(step: Copy, source: str) -> PurePosixPath:
    """Where one source of a COPY lands: a folder's contents go into ``dest`` itself (Docker
    copies what a folder holds, not the folder), a file into ``dest/`` or as ``dest``."""
    if step.into_folder and (REPO / source).is_file():
        return step.dest / PurePosixPath(source).name
    return step.dest


# --- .dockerignore ------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker's patternmatcher reads it: Go's filepath.Match (``*``
    and ``?`` stop at ``/``) plus ``**`` for any number of folders."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i + 1)
            out += pattern[i : end + 1].replace("[^", "[^/").replace("[!", "[^/")
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def ignored(dockerignore: Path = DOCKERIGNORE) -> Callable[[str], bool]:
    """Whether a path of the build context (relative, ``/``-separated) is left out of it: the
    last pattern that matches it or one of its folders decides, ``!`` patterns take back in."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    if dockerignore.exists():
        for raw in dockerignore.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            pattern = str(PurePosixPath(line.removeprefix("!").strip().lstrip("/")))
            rules.append((keep, _pattern_regex(pattern)))

    def check(path: str) -> bool:
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        out = False
        for keep, regex in rules:
            if any(regex.fullmatch(p) for p in prefixes):
                out = not keep
        return out

    return check


def context_files(source: str, dockerignore: Path = DOCKERIGNORE) -> list[PurePosixPath]:
    """The files of one COPY source that the build context holds, relative to the source (a
    file source gives ``[.]``)."""
    skip = ignored(dockerignore)
    root = REPO / source
    assert not skip(source), f"COPY {source}: .dockerignore leaves it out of the context"
    if root.is_file():
        return [PurePosixPath(".")]
    assert root.is_dir(), f"COPY {source}: not in the repository"
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(REPO).as_posix()
        # A link is in the context as a link (tearline/broker -> ../broker), and COPY keeps it.
        if (path.is_symlink() or path.is_file()) and not skip(relative):
            found.append(PurePosixPath(path.relative_to(root).as_posix()))
    return found


# --- docker-compose.yml -------------------------------------------------------------------------


def compose(compose_file: Path = COMPOSE_FILE) -> dict[str, Any]:
    data = yaml.safe_load(compose_file.read_text())
    assert isinstance(data, dict)
    return data


def service(name: str, compose_file: Path = COMPOSE_FILE) -> dict[str, Any]:
    found = compose(compose_file)["services"][name]
    assert isinstance(found, dict)
    return found


def interpolate(value: str, variables: dict[str, str] | None = None) -> str:
    """Compose's ``${NAME:-default}`` and ``${NAME}``, from ``variables`` (an operator's shell
    has none set here: the file's defaults are what `docker compose up` uses)."""
    given = variables or {}

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        return given.get(name) or (default if default is not None else "")

    assert "$$" not in value, "escaped $ is not read here"
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", one, value)


def environment(definition: dict[str, Any]) -> dict[str, str]:
    env = definition.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def mounts(definition: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) for each volume, short or long syntax."""
    found = []
    for volume in definition.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            found.append((source, target, "ro" in (mode[0].split(",") if mode else [])))
        else:
            found.append((volume["source"], volume["target"], bool(volume.get("read_only"))))
    return found


def health_test(definition: dict[str, Any]) -> list[str]:
    health = definition.get("healthcheck")
    assert isinstance(health, dict), "no healthcheck"
    assert not health.get("disable", False)
    raw = health["test"]
    test = shlex.split(raw) if isinstance(raw, str) else [str(v) for v in raw]
    assert test[0] in {"CMD", "CMD-SHELL"}, test
    return test[1:]
