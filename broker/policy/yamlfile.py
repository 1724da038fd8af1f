"""Reading policy YAML strictly, remembering the line of every field for error messages.

YAML 1.1 surprises are switched off: ``NO`` (Norway's id) stays a string instead of ``false``
and timestamps stay strings, so the JSON schema sees exactly what the operator wrote.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from tearline.clients.errors import PolicyError

Path = tuple[str | int, ...]


# libyaml's parser where PyYAML was built with it (its wheels are): the same documents, nodes
# and marks as the pure-Python parser, about eight times faster, and `policy check` and every
# policy reload parse each file of the folder. Resolving and constructing stay PyYAML's own,
# so the resolvers below apply to both.
try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # a PyYAML without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


class _StrictLoader(_Loader):
    pass


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":bool", ":timestamp"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf")
)


def load_yaml(text: str, file: str) -> tuple[Any, dict[Path, int]]:
    """Parse one YAML document; returns the data and the 1-based line of every path in it."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyError("the file is empty", file=file, line=1)
        lines: dict[Path, int] = {}
        _index(node, (), lines, file)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise PolicyError(
            f"not valid YAML: {exc.problem or exc.context}",
            file=file,
            line=mark.line + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"not valid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()


def _index(node: yaml.Node, path: Path, lines: dict[Path, int], file: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise PolicyError(
                    f"duplicate key {key!r}",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    field=dotted((*path, key)),
                )
            seen.add(key)
            _index(value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), lines, file)


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of ``path``, or of its nearest parent that has one."""
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path)
