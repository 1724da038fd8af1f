"""Identity files on a partner's disk: written with mode 0600, refused when others can read them."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from clients.errors import IdentityError
from clients.protocol.encoding import strict_loads
from clients.protocol.identity import Identity as _Identity
from clients.protocol.identity import Suite

PRIVATE_MODE = 0o600


class Identity(_Identity):
    """A partner's own keys. :meth:`load` reads the file that ``tearline keygen`` wrote."""

    __slots__ = ()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        file = Path(path)
        try:
            mode = file.stat().st_mode
            data = file.read_bytes()
        except OSError as exc:
            raise IdentityError(f"cannot read identity file {file}: {exc.strerror}") from None
        if stat.S_IMODE(mode) & 0o077:
            raise IdentityError(
                f"identity file {file} is readable by other users; run: chmod 600 {file}"
            )
        try:
            return cls._from_protocol(_Identity.from_dict(strict_loads(data)))
        except ValueError as exc:
            raise IdentityError(f"identity file {file} is not valid JSON: {exc}") from None

    @classmethod
    def _from_protocol(cls, identity: _Identity) -> Identity:
        return cls(identity.partner, identity.keys)


def generate(partner: str, suite: Suite, now: datetime, valid_for: timedelta) -> Identity:
    return Identity._from_protocol(_Identity.generate(partner, suite, now, valid_for))


def write_keypair(identity: _Identity, out_dir: Path, name: str | None = None) -> tuple[Path, Path]:
    """Write ``ID.identity.json`` (private, 0600, never overwritten) and ``ID.public.yaml``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path = out_dir / f"{identity.partner}.identity.json"
    public_path = out_dir / f"{identity.partner}.public.yaml"
    # Neither file is ever replaced: a key may be in use, its public half in a registry.
    for path in (private_path, public_path):
        if path.exists():
            raise IdentityError(f"{path} already exists; refusing to overwrite a key")
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        raise IdentityError(f"{private_path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(identity.to_dict(), out, indent=2)
        out.write("\n")
    entry = identity.public_entry(name)
    header = (
        f"# Registry entry for {identity.partner}: add it to the list under `partners:` in\n"
        "# policies/partners.yaml. Public keys only; the private keys stay in the identity file.\n"
    )
    public_path.write_text(header + yaml.safe_dump(entry, sort_keys=False, width=1 << 16))
    return private_path, public_path
