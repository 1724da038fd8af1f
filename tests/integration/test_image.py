"""The Docker image, built and run without Docker (issue 16, item 18; ``make heavy``).

The image once copied ``clients/`` and ``broker/`` but not ``gateway/``: its container looped on
"`tearline serve` is an operator command and needs the broker's packages" while CI only
validated the compose file. This test builds what the Dockerfile builds, step by step as Docker
would, and starts what `docker compose up` starts:

- every ``COPY`` copies the same files from the repository, less what .dockerignore leaves out
  of the build context, into a folder standing for the image's ``/``;
- every ``RUN`` that installs or checks runs its own command line under ``/bin/sh -c`` in the
  ``WORKDIR``, with the Dockerfile's ``ENV``, in a fresh virtualenv standing for the image's
  Python (the same pip line: ``pip install -c requirements.lock ".[broker]"``, from PyPI); the
  user and folder steps are reproduced (a RUN the test does not know fails it);
- the ``CMD`` runs with the environment the image and docker-compose.yml give it, on a real
  redis-server in place of compose's, as the image's unprivileged user when the test runs as
  root, with the policies read-only as compose mounts them; ``/readyz`` must say ready and the
  image's ``HEALTHCHECK`` must pass.

What differs from the image, and why: the listening address and port (``--host 127.0.0.1`` and a
free port, not every interface on 8000), ``REDIS_URL`` (this test's server, not the ``redis``
service), the interpreter (a local Python of the same major.minor as the ``FROM`` image) and
the virtualenv standing for its site-packages. Slow (a virtualenv install, ~30 s to a minute),
hence heavy.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest

from tearline.broker.embedded import EmbeddedRedis, free_port
from tests.dockerfile import (
    COMPOSE_FILE,
    REPO,
    Copy,
    cmd,
    context_files,
    environment,
    healthcheck,
    instructions,
    interpolate,
    landing,
    mounts,
    service,
    steps,
)

pytestmark = pytest.mark.heavy

INSTALL_TIMEOUT_S = 600
READY_TIMEOUT_S = 60
# Variables of this machine that say how to reach PyPI; a `docker build` gets them as build
# arguments or a daemon setting. Nothing else of the test's environment reaches the image.
NETWORK_VARIABLES = re.compile(r"^(PIP_[A-Z_]+|(HTTPS?|NO|ALL)_PROXY|SSL_CERT_(FILE|DIR))$", re.I)
MKDIR_CHOWN = re.compile(r"^mkdir -p (?P<made>[^&]+) && chown (?P<user>[^:\s]+):\S+ (?P<owned>.+)$")


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    home: PurePosixPath


@dataclass
class Image:
    """What the build made: ``root`` stands for the image's ``/``."""

    root: Path
    python: Path  # the virtualenv standing for the image's Python and its site-packages
    workdir: PurePosixPath = field(default_factory=lambda: PurePosixPath("/"))
    env: dict[str, str] = field(default_factory=dict)  # the Dockerfile's ENV, paths mapped
    users: dict[str, User] = field(default_factory=dict)  # made by useradd
    user: str | None = None  # USER
    log: list[str] = field(default_factory=list)  # what the build did, for a failure's message

    def path(self, inside: PurePosixPath | str) -> Path:
        """A path of the image, in the folder that stands for it."""
        return self.root / PurePosixPath(inside).relative_to("/")

    def mapped(self, value: str) -> str:
        """A variable's value with a path of the image made a path of the folder."""
        return str(self.path(value)) if value.startswith("/") else value

    @property
    def bin(self) -> Path:
        return self.python.parent

    def base_env(self) -> dict[str, str]:
        # The python image puts its interpreter's bin first on PATH; HOME is the user's.
        return {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


# --- building -----------------------------------------------------------------------------------


def _python_for(tag: str, uid: int | None) -> tuple[str, str]:
    """A local interpreter for the ``FROM`` image's Python, and what it is: one of the same
    major.minor that the image's user ``uid`` can run if there is one (pyenv's under /root is
    not: that user runs the broker), else of that version, else this test's own."""
    version = re.match(r"python:(\d+\.\d+)", tag)
    assert version, f"FROM {tag}: not a python image"
    wanted = version.group(1)
    # This test's own interpreter (under its virtualenv) first, then the system's.
    base = str(getattr(sys, "_base_executable", sys.executable))
    candidates = [base, shutil.which(f"python{wanted}") or ""]
    candidates += [f"/usr/bin/python{wanted}", f"/usr/local/bin/python{wanted}"]
    usable: dict[str, str] = {}  # path -> its major.minor, with venv and ensurepip
    for candidate in dict.fromkeys(c for c in candidates if c and os.access(c, os.X_OK)):
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0:
            usable[candidate] = probe.stdout.strip()
    matching = [c for c, v in usable.items() if v == wanted]
    if os.geteuid() == 0 and uid is not None:
        for candidate in matching:
            if _runs_as(candidate, uid):
                return candidate, f"Python {wanted}"
    if matching:
        return matching[0], f"Python {wanted}"
    # Another version is a weaker check of the pip line, still a check of everything else.
    assert base in usable, f"{base} cannot make a virtualenv"
    return base, f"Python {usable[base]}: no local {wanted}"


def _runs_as(python: str, uid: int) -> bool:
    try:
        probe = subprocess.run(
            [python, "-c", "import venv"], user=uid, group=uid, capture_output=True, check=False
        )
    except PermissionError:  # a folder on the way is closed to it
        return False
    return probe.returncode == 0


def _copy(image: Image, step: Copy) -> None:
    for source in step.sources:
        target = image.path(landing(step, source))
        files = context_files(source)
        for relative in files:
            origin = REPO / source / relative
            destination = target / relative if str(relative) != "." else target
            destination.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_symlink():  # as COPY does: the link itself, not what it points to
                destination.symlink_to(origin.readlink())
            else:
                shutil.copy2(origin, destination)
        image.log.append(f"COPY {source} -> {landing(step, source)} ({len(files)} files)")


def _run(image: Image, args: str, workdir: PurePosixPath) -> None:
    words = shlex.split(args)
    if words[0] == "useradd":
        user = _useradd(words)
        image.users[words[-1]] = user
        image.log.append(f"RUN {args}: the image's user is uid {user.uid}")
        return
    chown = MKDIR_CHOWN.match(args)
    if chown:
        for made in chown["made"].split():
            image.path(made).mkdir(parents=True, exist_ok=True)
        owner = image.users[chown["user"]]
        for owned in chown["owned"].split():
            if os.geteuid() == 0:
                os.chown(image.path(owned), owner.uid, owner.gid)
        image.log.append(f"RUN {args}")
        return
    if "pip install" in args or words[0] == "python":
        # The command line as written, under sh as Docker's shell form runs it.
        network = {k: v for k, v in os.environ.items() if NETWORK_VARIABLES.match(k)}
        env = {**network, **image.base_env(), "HOME": str(image.path("/root")), **image.env}
        started = time.monotonic()
        done = subprocess.run(
            ["/bin/sh", "-c", args],
            cwd=image.path(workdir),
            env=env,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
        image.log.append(
            f"RUN {args}: exit {done.returncode} in {time.monotonic() - started:.0f} s"
        )
        assert done.returncode == 0, "\n".join([*image.log, done.stdout[-4000:], done.stderr])
        return
    pytest.fail(f"RUN {args}: this test does not know how to reproduce it; teach it")


def _useradd(words: list[str]) -> User:
    assert "--user-group" in words, words  # a group of the user's name, with its id
    uid = int(words[words.index("--uid") + 1])
    return User(uid, uid, PurePosixPath(words[words.index("--home-dir") + 1]))


def build(root: Path) -> Image:
    """Each Dockerfile step in order, in ``root``."""
    base = instructions()[0]
    assert base[0] == "FROM"
    made = [shlex.split(a) for k, a, _ in steps() if k == "RUN" and a.startswith("useradd ")]
    python, which = _python_for(base[1], _useradd(made[-1]).uid if made else None)
    venv = root / "python"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
    image = Image(root, venv / "bin" / "python")
    image.log.append(f"FROM {base[1]}: a virtualenv of {python} ({which})")
    (root / "root").mkdir()
    for kind, step, workdir in steps():
        image.path(workdir).mkdir(parents=True, exist_ok=True)
        image.workdir = workdir
        if kind == "ENV":
            image.env |= {k: image.mapped(v) for k, v in step.items()}
        elif kind == "COPY":
            _copy(image, step)
        elif kind == "RUN":
            _run(image, step, workdir)
        elif kind == "USER":
            image.user = step
    return image


# --- running ------------------------------------------------------------------------------------


@pytest.fixture
def image_root() -> Iterator[Path]:
    # Not pytest's tmp_path: its parent is root's alone (0700) and the image's user must
    # reach these files, as it reaches the image's.
    root = Path(tempfile.mkdtemp(prefix="tearline-image-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for folder in root.rglob("*"):  # the read-only policies, for a non-root test
            if folder.is_dir() and not folder.is_symlink():
                folder.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def _mount_read_only(image: Image, source: Path, target: str) -> None:
    """Compose's ``source:target:ro``: the folder replaced by the host's, unwritable."""
    folder = image.path(target)
    shutil.rmtree(folder)
    shutil.copytree(source, folder)
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    folder.chmod(0o555)


def _container_env(image: Image, redis_url: str, port: int) -> dict[str, str]:
    broker = service("broker")
    compose_env = {k: image.mapped(interpolate(v)) for k, v in environment(broker).items()}
    assert compose_env["REDIS_URL"] == "redis://redis:6379/0"
    env = {**image.base_env(), **image.env, **compose_env}
    # Docker sets HOME from the image's passwd entry for USER.
    home = image.path(image.users[image.user].home if image.user else "/root")
    # Compose's metrics listener, on a free port of this machine's loopback (not every
    # interface of it, as the container's network is).
    metrics = {"TEARLINE_METRICS_PORT": str(free_port()), "TEARLINE_METRICS_HOST": "127.0.0.1"}
    assert compose_env.keys() >= metrics.keys()
    return env | metrics | {"HOME": str(home), "REDIS_URL": redis_url, "TEARLINE_PORT": str(port)}


def _as_user(image: Image) -> User | None:
    """The image's user, when this test can become it (as root, with an interpreter it can
    run); None: the broker runs as the test's own user."""
    if os.geteuid() != 0 or image.user is None:
        return None
    user = image.users[image.user]
    return user if _runs_as(str(image.python), user.uid) else None


def test_the_image_builds_and_serves_ready_on_redis(
    image_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    image = build(image_root)
    built_s = time.monotonic() - started

    # docker-compose.yml's mounts: the operator's policies, read-only, over the image's.
    broker = service("broker")
    for source, target, read_only in mounts(broker):
        if source.startswith("."):
            assert read_only, f"{source} is mounted writable"
            _mount_read_only(image, (COMPOSE_FILE.parent / source).resolve(), target)
    user = _as_user(image)

    with EmbeddedRedis(tmp_path / "redis") as redis:
        port = free_port()
        env = _container_env(image, redis.url, port)
        argv = cmd()
        assert argv[:2] == ["tearline", "serve"]
        argv[argv.index("--host") + 1] = "127.0.0.1"  # not every interface of this machine
        uid, gid = (user.uid, user.gid) if user else (None, None)

        # Everything the image's `tearline` offers is there: no command is a stand-in.
        help_done = subprocess.run(
            ["tearline", "--help"],
            cwd=image.path(image.workdir),
            env=env | {"COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            user=uid,
            group=gid,
        )
        assert help_done.returncode == 0, help_done.stderr
        for stand_in in ("Needs pip install", "Unavailable:"):
            assert stand_in not in help_done.stdout, help_done.stdout

        log_path = tmp_path / "broker.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=image.path(image.workdir),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=uid,
                group=gid,
            )
        try:
            ready = _wait_ready(f"http://127.0.0.1:{port}", process, log_path)
            ready_s = time.monotonic() - started - built_s
            assert ready["ready"] is True, ready
            assert ready["checks"]["policy"] is True, ready
            assert ready["checks"]["redis"] is True, ready
            assert ready["checks"]["policy_reload"] == "ok", ready
            assert ready["checks"]["inboxes"] == "ready", ready

            # What Prometheus scrapes from the compose network: metrics, unsigned.
            metrics_url = f"http://127.0.0.1:{env['TEARLINE_METRICS_PORT']}/metrics"
            scraped = httpx.get(metrics_url, timeout=10)
            assert scraped.status_code == 200, scraped.text
            assert "tearline_" in scraped.text

            # The image's HEALTHCHECK, as Docker runs it inside the container.
            check = subprocess.run(
                healthcheck(),
                cwd=image.path(image.workdir),
                env=env,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
                user=uid,
                group=gid,
            )
            assert check.returncode == 0, check.stderr

            # The receipt key is on the data volume, written by the image's user.
            data = Path(env["TEARLINE_DATA_DIR"])
            keys = [p for p in data.iterdir() if p.suffix == ".json"]
            assert keys, f"no broker key in {data}"
            if user:
                assert {p.stat().st_uid for p in keys} == {user.uid}
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
        assert code == 0, log_path.read_text(errors="replace")

    log_text = log_path.read_text(errors="replace")
    assert "is an operator command" not in log_text
    with capsys.disabled():
        who = f"uid {user.uid}" if user else f"uid {os.geteuid()} (the image's user: unavailable)"
        print(
            f"\nimage built in {built_s:.0f} s, ready in {ready_s:.1f} s as {who}:\n  "
            + "\n  ".join(image.log)
        )


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> Any:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: Any = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"`tearline serve` exited {process.returncode}:\n{log_path.read_text()}")
        try:
            answer = httpx.get(f"{url}/readyz", timeout=2.0)
            last = answer.json()
            if answer.status_code == 200:
                return last
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    pytest.fail(f"/readyz not ready within {READY_TIMEOUT_S} s ({last}):\n{log_path.read_text()}")
