"""Reading ``policies/`` from disk: the one place the policy code touches the file system.

The broker's watcher runs this every few seconds on a folder that anyone with write access to it
can fill, so it is bounded: at most ``MAX_DIR_ENTRIES`` entries are listed per folder; a file
over ``MAX_FILE_BYTES``, or past ``MAX_FOLDER_BYTES`` read in all, is refused unread. Only
regular files are read, opened non-blocking, so a FIFO or a device named ``partners.yaml`` is an
error rather than a hang. Symbolic links are followed (Kubernetes mounts ConfigMaps as links).
Which entries are read, ignored or refused is decided by :mod:`broker.policy.fingerprint`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from tearline.broker.policy.fingerprint import (
    MAX_DIR_ENTRIES,
    MAX_FILE_BYTES,
    MAX_FOLDER_BYTES,
    Action,
    MiB,
    PolicyFiles,
    classify,
    refusal,
)

# Non-blocking so that opening a FIFO returns at once; no controlling terminal from a tty.
_OPEN_FLAGS: Final = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | os.O_CLOEXEC
)
_CHUNK_BYTES: Final = 1 * MiB


class _NotRead(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def read_policy_folder(root: Path) -> PolicyFiles:
    """The policy folder's files and bytes as they are now, and every entry not read and why."""
    contents: dict[str, bytes] = {}
    unread: dict[str, str] = {}
    try:
        top = _list(root)
    except (FileNotFoundError, NotADirectoryError):
        return PolicyFiles({}, {str(root): "policy folder does not exist"}, listed=False)
    except OSError as exc:
        why = f"policy folder cannot be listed: {exc.strerror}"
        return PolicyFiles({}, {str(root): why}, listed=False)
    entries, truncated = top
    if truncated:
        unread[str(root)] = f"more than {MAX_DIR_ENTRIES} entries; the rest were not read"
    todo: list[tuple[str, bool]] = []
    for name, is_dir in entries:
        if classify(name, is_dir=is_dir) is not Action.DESCEND:
            todo.append((name, is_dir))
            continue
        try:
            inner, truncated = _list(root / name)
        except OSError as exc:
            unread[f"{name}/"] = f"cannot be listed: {exc.strerror}"
            continue
        if truncated:
            unread[f"{name}/"] = f"more than {MAX_DIR_ENTRIES} entries; the rest were not read"
        todo += [(f"{name}/{n}", d) for n, d in inner]
    budget = MAX_FOLDER_BYTES
    for rel, is_dir in todo:
        if not _utf8(rel):  # it could be neither logged nor shown as JSON as it is
            unread[_printable(rel)] = "the name is not UTF-8: rename it or move it out"
            continue
        action = classify(rel, is_dir=is_dir)
        if action is Action.IGNORE:
            continue
        if action is not Action.READ:
            unread[rel] = refusal(rel, is_dir=is_dir)
            continue
        try:
            data = _read(root / rel, min(MAX_FILE_BYTES, budget))
        except _NotRead as exc:
            unread[rel] = exc.why
            continue
        except OSError as exc:
            unread[rel] = f"cannot be read: {exc.strerror}"
            continue
        contents[rel] = data
        budget -= len(data)
    return PolicyFiles(contents, unread)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")  # os.scandir gives undecodable bytes as lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _list(folder: Path) -> tuple[list[tuple[str, bool]], bool]:
    """``(name, is a folder)`` for up to MAX_DIR_ENTRIES entries, sorted; and whether there
    were more."""
    entries: list[tuple[str, bool]] = []
    truncated = False
    with os.scandir(folder) as listing:
        for entry in listing:
            if len(entries) == MAX_DIR_ENTRIES:
                truncated = True
                break
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                is_dir = False  # then reading it says what is wrong
            entries.append((entry.name, is_dir))
    return sorted(entries), truncated


def _read(path: Path, limit_bytes: int) -> bytes:
    """The bytes of the regular file at ``path``, or :class:`_NotRead` past ``limit_bytes``."""
    too_big = (
        f"over the {MAX_FILE_BYTES // MiB} MiB limit for a policy file; not read"
        if limit_bytes == MAX_FILE_BYTES
        else f"past the {MAX_FOLDER_BYTES // MiB} MiB limit for the whole policy folder; not read"
    )
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _NotRead("not a regular file; not read")
        if info.st_size > limit_bytes:
            raise _NotRead(too_big)
        chunks: list[bytes] = []
        size = 0
        # Read to the limit, not to st_size: a file that grows while it is read stays bounded.
        while size <= limit_bytes:
            chunk = os.read(fd, min(_CHUNK_BYTES, limit_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit_bytes:
            raise _NotRead(too_big)
        return b"".join(chunks)
    finally:
        os.close(fd)
