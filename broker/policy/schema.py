"""The JSON schemas the policy files are checked against: data shipped in the package
(``schemas/*.schema.json``), read once on first use.

Not pure: it reads the installation's own files. It is the one module the pure
:mod:`broker.policy.check` may import that does; what it reads is fixed when the package is
installed, like the code itself, never the operator's folder.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from referencing import Registry as SchemaRegistry
from referencing import Resource

from tearline.clients import iri_grammar

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator


@cache
def _schema(name: str) -> dict[str, Any]:
    schemas = resources.files("tearline.broker.policy").joinpath("schemas")
    text = schemas.joinpath(f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator of ``<name>.schema.json`` (``scheme``, ``partners``, ``operators``,
    ``agreement``)."""
    # Imported here, not above, and without building rfc3987-syntax's IRI grammar (2.4 s on
    # this machine, for a format checker these schemas never use): clients.iri_grammar defers
    # it to the first `iri` checked. Every `tearline` command and broker process would
    # otherwise pay for it at start whether it reads YAML or not.
    iri_grammar.defer()
    from jsonschema import Draft202012Validator

    # The operators schema reuses the partners schema's entry: both are registered by $id.
    known = SchemaRegistry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in map(_schema, ("partners", "operators"))
    )
    return Draft202012Validator(_schema(name), registry=known)
