"""Reading a profile: YAML nodes or Python values become one tree of values with their lines.

The reader bounds depth and size whatever the input holds, and keeps each
scalar as written, so that the checks can report ``FILE:LINE`` and read
addresses as the user typed them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from fowld.daemon.profiles.model import ProfileError

# The schema nests three levels deep; the bounds stop alias loops and alias bombs.
_MAX_DEPTH = 16
_MAX_VALUES = 10_000


@dataclass(frozen=True)
class Value:
    """One value of a profile and the line it came from (None when there are no lines)."""

    data: object  # a scalar, a list of Value ("list"), or a list of Entry ("mapping")
    line: int | None
    shape: str  # "scalar", "list" or "mapping"
    text: str | None = None  # a YAML scalar as written, before YAML typed it


@dataclass(frozen=True)
class Entry:
    key: str
    key_line: int | None
    value: Value


class Reader:
    """Builds the located tree, bounding depth and size whatever the input holds."""

    def __init__(self, source: str, loader: yaml.SafeLoader | None = None) -> None:
        self.source = source
        self.loader = loader
        self.budget = _MAX_VALUES

    def _spend(self, line: int | None, depth: int) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise ProfileError(self.source, line, f"too many values (more than {_MAX_VALUES})")
        if depth > _MAX_DEPTH:
            raise ProfileError(self.source, line, "values are nested too deeply")

    def from_node(self, node: yaml.Node, depth: int = 0) -> Value:
        line = node.start_mark.line + 1
        self._spend(line, depth)
        if isinstance(node, yaml.ScalarNode):
            try:
                data = self.loader.construct_object(node, deep=True)
            except Exception as e:  # PyYAML's typed constructors raise anything on bad text
                reason = getattr(e, "problem", None) or str(e)
                raise ProfileError(
                    self.source, line, f"cannot read {shorten(node.value)!r}: {reason}"
                ) from None
            return Value(data, line, "scalar", text=node.value)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, "tag:yaml.org,2002:seq", line)
            return Value([self.from_node(n, depth + 1) for n in node.value], line, "list")
        entries = [
            Entry(key_node.value, key_node.start_mark.line + 1, self.from_node(value, depth + 1))
            for key_node, value in self._pairs(node, depth)
        ]
        return Value(entries, line, "mapping")

    def _pairs(self, node: yaml.MappingNode, depth: int) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        """A mapping's key/value nodes with ``<<`` merge keys applied.

        Keys written in the mapping win over merged ones, and earlier merged mappings win
        over later ones, as YAML's merge key type says. Keys written twice stay twice, so
        that the checks can report them.
        """
        line = node.start_mark.line + 1
        self._spend(line, depth)
        self._check_tag(node, "tag:yaml.org,2002:map", line)
        own, merged = [], []
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ProfileError(self.source, key_line, "a key must be a plain word")
            if key_node.tag != "tag:yaml.org,2002:merge":
                own.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise ProfileError(self.source, key_line, "'<<' can only merge mappings")
                merged.extend(self._pairs(source, depth + 1))
        seen = {key_node.value for key_node, _ in own}
        for key_node, value_node in merged:
            if key_node.value not in seen:
                seen.add(key_node.value)
                own.append((key_node, value_node))
        return own

    def _check_tag(self, node: yaml.Node, expected: str, line: int) -> None:
        if node.tag != expected:
            raise ProfileError(self.source, line, f"unsupported YAML tag {node.tag!r}")

    def from_python(self, obj: object, depth: int = 0) -> Value:
        self._spend(None, depth)
        if isinstance(obj, Mapping):
            entries = [
                Entry(k if isinstance(k, str) else repr(k), None, self.from_python(v, depth + 1))
                for k, v in obj.items()
            ]
            return Value(entries, None, "mapping")
        if isinstance(obj, list | tuple):
            return Value([self.from_python(v, depth + 1) for v in obj], None, "list")
        return Value(obj, None, "scalar")


def shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Value) -> str:
    """What a value is, in the words of someone writing YAML."""
    if value.shape != "scalar":
        return f"a {value.shape}"
    data = value.data
    if data is None:
        return "nothing (null)"
    if isinstance(data, bool):
        return f"{str(data).lower()} (a yes/no value)"
    if isinstance(data, int | float):
        return f"the number {data}"
    if isinstance(data, str):
        return f"the text {shorten(data)!r}"
    return f"a value of type {type(data).__name__}"
