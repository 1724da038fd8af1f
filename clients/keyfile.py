"""Identity files on a partner's disk: written with mode 0600, refused when others can read them."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tearline.clients.errors import IdentityError
from tearline.clients.protocol.encoding import strict_loads
from tearline.clients.protocol.identity import Identity as _Identity
from tearline.clients.protocol.identity import Suite

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
        except IsADirectoryError:
            raise IdentityError(
                f"{file} is a folder; give the identity file in it, like {file}/ID.identity.json"
            ) from None
        except OSError as exc:
            raise IdentityError(f"cannot read identity file {file}: {exc.strerror}") from None
        # What the file is, before its mode is judged: a public entry given by mistake is
        # readable by all on purpose, and "chmod 600" would be the wrong advice.
        parsed: Any = None
        not_json: ValueError | None = None
        try:
            parsed = strict_loads(data)
        except ValueError as exc:
            not_json = exc
        public = _public_entry_instead(file, data, parsed)
        if public is not None:
            raise IdentityError(public)
        if stat.S_IMODE(mode) & 0o077:
            raise IdentityError(
                f"identity file {file} is readable by other users; run: chmod 600 {file}"
            )
        if not_json is not None:
            raise IdentityError(f"identity file {file} is not valid JSON: {not_json}")
        try:
            return cls._from_protocol(_Identity.from_dict(parsed))
        except (IdentityError, ValueError) as exc:
            raise IdentityError(f"identity file {file}: {exc}") from None

    @classmethod
    def _from_protocol(cls, identity: _Identity) -> Identity:
        return cls(identity.partner, identity.keys)


def _public_entry_instead(file: Path, data: bytes, parsed: object) -> str | None:
    """Why ``file`` is not an identity but something written beside one (the public registry
    entry, or a whole registry), with the file to use instead; None if it is neither."""
    if parsed is None:  # not JSON: perhaps the YAML that keygen writes beside the identity
        import yaml  # here: loading an identity, which is JSON, needs no YAML parser

        try:
            parsed = yaml.safe_load(data)
        except (yaml.YAMLError, ValueError):
            return None
    if not isinstance(parsed, dict):
        return None
    if "partners" in parsed or "operators" in parsed:
        return (
            f"{file} is a registry (a policy folder's partners.yaml or operators.yaml), not an "
            "identity; give this node's ID.identity.json, written by tearline keygen or init"
        )
    keys = parsed.get("keys")
    if "id" not in parsed or not isinstance(keys, list):
        return None
    if any(isinstance(k, dict) and "private" in k for k in keys):
        return None
    sibling = file.with_name(f"{parsed['id']}.identity.json")
    instead = (
        f"use {sibling}, written beside it"
        if sibling.exists()
        else "use the ID.identity.json that tearline keygen wrote beside it"
    )
    return (
        f"{file} is {parsed['id']}'s public registry entry (public keys only), not an identity "
        f"file: {instead}"
    )


def generate(partner: str, suite: Suite, now: datetime, valid_for: timedelta) -> Identity:
    return Identity._from_protocol(_Identity.generate(partner, suite, now, valid_for))


def write_keypair(identity: _Identity, out_dir: Path, name: str | None = None) -> tuple[Path, Path]:
    """Write ``ID.identity.json`` (private, 0600, never overwritten) and ``ID.public.yaml``."""
    import yaml

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
        f"# Registry entry for {identity.partner}, public keys only (the private keys stay in the\n"
        "# identity file). An operator adds it to the broker's registry with:\n"
        f"#   tearline partner add {public_path.name} --policies POLICY-FOLDER\n"
    )
    public_path.write_text(header + yaml.safe_dump(entry, sort_keys=False, width=1 << 16))
    return private_path, public_path
