"""``tearline subscribe --out DIR``: each report decrypted to a file only this user can read.

For report ``R`` the folder gets ``R.json`` (STIX and other JSON content) or ``R.bin`` (anything
else), and ``R.label.json``: the label, originator, TLP, content type and when it arrived, the
facts a person or a script needs to handle the payload as its marking says. Both are mode 0600,
each written to a hidden temporary file and renamed into place; the label file comes last, so
once it is there the payload is complete. The folder is made mode 0700; one others can read or
enter is refused unless the caller says otherwise, since the payloads are the plaintext of
reports shared under agreements (CONFIDENTIAL and above, often).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from tearline.clients.errors import InputError
from tearline.clients.partner import Report
from tearline.clients.protocol.encoding import format_time

FILE_MODE: Final = 0o600
FOLDER_MODE: Final = 0o700
#: Report ids are UUIDs (the envelope's ``header.id`` is checked to be a UUIDv7 when it is
#: opened); a recall notice's id comes from the broker unverified, so it is checked here before
#: it names a file to delete.
_REPORT_ID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_EXTENSIONS: Final = (".json", ".bin")


def extension(content_type: str) -> str:
    """``.json`` for STIX and other JSON media types, ``.bin`` for anything else."""
    media = content_type.split(";", 1)[0].strip().lower()
    return ".json" if media == "application/json" or media.endswith("+json") else ".bin"


@dataclass(frozen=True)
class Written:
    payload: Path
    label: Path


class InboxFolder:
    """The folder reports are written to; :meth:`prepare` first."""

    def __init__(self, path: Path, *, allow_world_readable: bool = False) -> None:
        self.path = path
        self.allow_world_readable = allow_world_readable

    def prepare(self) -> None:
        """Make the folder (mode 0700), or check the one there. Raises InputError saying how
        to fix a folder that is not one, or that other users can read or enter."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            try:
                self.path.mkdir(parents=True, mode=FOLDER_MODE)
                os.chmod(self.path, FOLDER_MODE)  # whatever the umask let mkdir do
            except OSError as exc:
                raise InputError(f"--out {self.path}: cannot make it: {exc.strerror}") from None
            return
        except OSError as exc:
            raise InputError(f"--out {self.path}: {exc.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise InputError(f"--out {self.path} is not a folder; name a folder to write into")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o005 and not self.allow_world_readable:
            raise InputError(
                f"--out {self.path} can be listed or entered by other users (mode {mode:04o}) "
                "and will hold decrypted reports; run: chmod 700 "
                f"{self.path} (or pass --allow-world-readable if that is intended)",
                code="out_folder_readable",
            )
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise InputError(f"--out {self.path}: not writable by this user")

    def write(self, report: Report, received: datetime) -> Written:
        """Write ``report``'s payload and its label file; both 0600, the label file last."""
        payload = self.path / f"{report.id}{extension(report.content_type)}"
        label = self.path / f"{report.id}.label.json"
        facts = {
            "report_id": report.id,
            "originator": report.originator,
            "created": format_time(report.created),
            "received": format_time(received),
            "classification": report.label.classification,
            "tlp": report.label.tlp,
            "content_type": report.content_type,
            "label": report.label.to_dict(),
            "payload": payload.name,
            "bytes": len(report.payload),
            "sha256": hashlib.sha256(report.payload).hexdigest(),
        }
        _write_private(payload, report.payload)
        _write_private(label, (json.dumps(facts, indent=2) + "\n").encode())
        return Written(payload, label)

    def remove(self, report_id: str) -> list[Path]:
        """Delete what was written for ``report_id`` (a recall); returns the files deleted."""
        if not _REPORT_ID.fullmatch(report_id):
            return []  # not an id this folder could hold: never a path to follow
        removed = []
        # The bare id too: the name earlier versions wrote a payload under.
        for name in (*(f"{report_id}{ext}" for ext in _EXTENSIONS), f"{report_id}.label.json",
                     report_id):  # fmt: skip
            path = self.path / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
        return removed


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) by a rename, so nobody reads half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    try:
        with os.fdopen(os.open(temporary, flags, FILE_MODE), "wb") as out:
            os.fchmod(out.fileno(), FILE_MODE)  # a leftover temporary keeps its old mode else
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
