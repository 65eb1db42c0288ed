"""YAML to plain data, remembering where every key and value was written.

PyYAML's composer gives nodes with marks; we build plain dicts, lists and scalars from
them ourselves so that (1) each value's position is kept by path, (2) duplicate keys are
an error rather than silently last-wins, and (3) scalars follow YAML 1.2 rules: ``no`` is
a string, not false, and ``00:30:00`` is a string, not 1800 (YAML 1.1 sexagesimal).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

Path = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _Resolver(BaseResolver):
    """YAML 1.2 core schema implicit types."""


for _tag, _regex, _first in (
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_INT, r"^[-+]?[0-9]+$", "-+0123456789"),
    (_FLOAT, r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$", "-+.0123456789"),
):
    _Resolver.add_implicit_resolver(_tag, re.compile(_regex), list(_first))


class _Composer(Reader, Scanner, Parser, Composer, _Resolver):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Resolver.__init__(self)


@dataclass(frozen=True)
class Mark:
    """A 1-based line and column."""

    line: int
    column: int


@dataclass
class Document:
    """Plain data from a YAML file, with the position of every value and key."""

    data: Any
    values: dict[Path, Mark] = field(default_factory=dict)
    keys: dict[Path, Mark] = field(default_factory=dict)
    #: (mark, message) for problems found while reading
    problems: list[tuple[Mark, str]] = field(default_factory=list)

    def mark(self, path: Path, *, key: bool = False) -> Mark:
        """Position of the value at ``path`` (or of its key), else its nearest ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Mark(1, 1))


def _mark(node: Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expands_env(path: Path) -> bool:
    """Whether ``${VAR}`` is expanded at ``path``: transport and hub settings only.

    Elsewhere ``$`` is left alone, so prologue lines can use ``${SLURM_CPUS_PER_TASK}``.
    """
    return (len(path) >= 4 and path[0] == "clusters" and path[2] == "transport") or (
        len(path) >= 2 and path[0] == "hub"
    )


_MAX_NODES = 100_000
_MAX_DEPTH = 32


class _TooLarge(Exception):
    def __init__(self, mark: Mark) -> None:
        self.mark = mark


class _Builder:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.doc = Document(data=None)
        self.budget = _MAX_NODES

    def build(self, node: Node, path: Path) -> Any:
        self.doc.values[path] = _mark(node)
        self.budget -= 1
        if self.budget < 0 or len(path) > _MAX_DEPTH:
            # aliases can make a small file expand into a huge (or endless) structure
            raise _TooLarge(_mark(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)  # the composer makes no other kind
        return self._scalar(node, path)

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag not in (_STR, _INT):
                self.doc.problems.append((_mark(key_node), "keys must be plain names"))
                continue
            key = str(key_node.value)
            if key in result:
                first = self.doc.keys[(*path, key)]
                self.doc.problems.append(
                    (_mark(key_node), f"duplicate key '{key}' (first at line {first.line})")
                )
                continue
            self.doc.keys[(*path, key)] = _mark(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        value = node.value
        if node.tag == _STR:
            return self._expand(value, node, path) if expands_env(path) else value
        if node.tag == _BOOL:
            return value.lower() == "true"
        if node.tag == _NULL:
            return None
        if node.tag == _INT:
            return int(value)
        if node.tag == _FLOAT:
            return float(value)
        self.doc.problems.append((_mark(node), f"YAML tag {node.tag} is not allowed here"))
        return None

    def _expand(self, value: str, node: ScalarNode, path: Path) -> str:
        def substitute(match: re.Match[str]) -> str:
            name, default = match[1], match[2]
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            message = (
                f"environment variable {name} is not set "
                f"(write ${{{name}:-DEFAULT}} to give a default)"
            )
            self.doc.problems.append((_mark(node), message))
            return ""

        return _ENV_REF.sub(substitute, value)


def read_yaml(text: str, env: Mapping[str, str] | None = None) -> Document:
    """Parse ``text`` (one YAML document) into a :class:`Document`.

    ``env`` is used for ``${VAR}`` / ``${VAR:-default}`` in transport and hub settings
    (default: the process environment). Syntax errors become problems, not exceptions.
    """
    builder = _Builder(os.environ if env is None else env)
    try:
        root = _Composer(text).get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        return Document(data=None, problems=[(where, message)])
    except yaml.YAMLError as exc:  # e.g. a reader error for a NUL byte
        return Document(data=None, problems=[(Mark(1, 1), f"YAML error: {exc}")])
    if root is None:
        return Document(data=None, problems=[(Mark(1, 1), "the profile is empty")])
    try:
        builder.doc.data = builder.build(root, ())
    except _TooLarge as exc:
        return Document(data=None, problems=[(exc.mark, "the profile is too large or deep")])
    return builder.doc
