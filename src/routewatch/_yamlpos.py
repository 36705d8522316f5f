"""YAML loading that remembers where each value came from, shared by config and eval sets.

``load_yaml`` returns the plain data and a ``LineMap`` from data paths such as
``("routes", "chat", "price")`` to 1-based lines, so a pydantic error at that
path can be reported as ``file:line: routes.chat.price: message``.
"""

from __future__ import annotations

import collections.abc
import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from routewatch.errors import Problem

PathKey = tuple[str | int, ...]

_MAX_DEPTH = 64
"""Deeper documents are refused: real config never nests this far, and aliases can recurse."""

_MAX_NODES = 2_000_000
"""Aliases can expand a small file into billions of values ("billion laughs"); stop early."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LineMap:
    """Lines of the values in one file, with the helpers that turn paths into Problems."""

    path: str
    lines: dict[PathKey, int] = field(default_factory=dict)
    base: PathKey = ()

    def line(self, loc: Sequence[str | int]) -> int | None:
        """The line of the value at ``loc``, or of its nearest located ancestor."""
        key = self.base + tuple(loc)
        while True:
            if key in self.lines:
                return self.lines[key]
            if not key:
                return None
            key = key[:-1]

    def problem(self, loc: Sequence[str | int], message: str) -> Problem:
        """A Problem at ``loc`` (relative to ``base``)."""
        return Problem(path=self.path, line=self.line(loc), field=format_loc(loc), message=message)

    def at(self, loc: Sequence[str | int]) -> LineMap:
        """A view of this map rooted at ``loc``, for validating a nested part on its own."""
        return LineMap(path=self.path, lines=self.lines, base=self.base + tuple(loc))

    def from_validation(
        self,
        exc: ValidationError,
        prefix: PathKey = (),
        *,
        every_key: str = "see `routewatch init` for every key",
        model: type[BaseModel] | None = None,
    ) -> list[Problem]:
        """One Problem per pydantic error, located by the error's ``loc``.

        ``every_key`` tells an unknown field's reader where every key is listed; with the
        ``model`` validated, an unknown field close to a known one is told its name.
        """
        errors = [(prefix + clean_loc(e["loc"]), e) for e in exc.errors(include_url=False)]
        nested = {loc[:n] for loc, _ in errors for n in range(len(loc))}
        return [
            self.problem(loc, _message(err, every_key, model))
            for loc, err in errors
            # A list whose entries failed is "too short" only because they were dropped.
            if not (err["type"] == "too_short" and loc in nested)
        ]


def format_loc(loc: Iterable[str | int]) -> str:
    """``("items", 3, "checks", 0)`` -> ``items[3].checks[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _fields_at(model: type[BaseModel], loc: PathKey) -> list[str]:
    """The keys a mapping at ``loc`` of a ``model`` document may have, as files spell them.

    Follows model fields, ``dict`` values and list or tuple items, through optional and
    union types; an empty list where ``loc`` leads to no model.
    """
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    final = _as_model(current)
    if final is None:
        return []
    return [field.alias or name for name, field in final.model_fields.items()]


def _step(annotation: Any, part: str | int) -> Any:
    """The type of the value at key or index ``part`` of a value typed ``annotation``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _step(typing.get_args(annotation)[0], part)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _step(arg, part)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if isinstance(part, int):
            return None
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    args = typing.get_args(annotation)
    if origin in (dict, collections.abc.Mapping) and isinstance(part, str) and len(args) == 2:
        return args[1]
    if origin in (list, tuple, collections.abc.Sequence) and isinstance(part, int) and args:
        return args[0]
    return None


def _as_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _as_model(arg)
            if found is not None:
                return found
    return None


def clean_loc(loc: tuple[str | int, ...]) -> PathKey:
    """A pydantic error's ``loc`` as a path of keys in the file."""
    # Pydantic adds pseudo-parts for validators and unions ("function-after[...]",
    # "list[str]"); they name no key in the file.
    return tuple(p for p in loc if isinstance(p, int) or not ("[" in p or "(" in p))


def _message(err: Any, every_key: str, model: type[BaseModel] | None = None) -> str:
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] == "extra_forbidden":
        loc = clean_loc(err["loc"])
        known = _fields_at(model, loc[:-1]) if model is not None and loc else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.75) if loc else []
        if close:
            return f"unknown field; did you mean `{close[0]}`?"
        return f"unknown field (check its spelling, or {every_key})"
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "too_short":
        # Pydantic names the Python type ("Tuple should have..."); people wrote a YAML list.
        ctx = err.get("ctx", {})
        least, found = ctx.get("min_length", 1), ctx.get("actual_length", 0)
        return f"needs at least {least} entr{'y' if least == 1 else 'ies'}; found {found or 'none'}"
    return msg


@dataclass(frozen=True, slots=True, kw_only=True)
class Located:
    """A YAML document as plain data, with the lines of its values."""

    data: Any
    lines: LineMap


def read_source(path: Path, shown: str, *, missing: str = "file not found") -> str:
    """The text of an input file, or a ``YamlSyntaxError`` carrying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlSyntaxError(Problem(path=shown, line=None, field="", message=missing)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlSyntaxError(
            Problem(path=shown, line=None, field="", message=f"cannot read: {exc}")
        ) from None


_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML was built with it (its wheels are): it reads a 1,000-item
eval set about eight times faster than the pure-Python one, with the same nodes and marks."""


_KEPT_AS_TEXT = frozenset({"tag:yaml.org,2002:timestamp"})
"""Implicit tags whose values are kept as the text written, never constructed."""


class YamlSyntaxError(Exception):
    """The text is not YAML that routewatch can read; carries the located problem."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def load_yaml(text: str, path: str) -> Located:
    """Parse one YAML document into plain data and a ``LineMap``.

    Raises:
        YamlSyntaxError: bad syntax, several documents, a duplicate key, a key
            that is not a plain scalar, or nesting deeper than 64 levels.
    """
    loader: yaml.SafeLoader | None = None
    builder: _Builder | None = None
    try:
        loader = _SafeLoader(text)
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}, 0) > _MAX_NODES:
            raise YamlSyntaxError(
                Problem(
                    path=path,
                    line=node.start_mark.line + 1,
                    field="",
                    message=f"more than {_MAX_NODES} values (aliases expanding?)",
                )
            )
        builder = _Builder(loader, path)
        data = None if node is None else builder.build(node, (), 0)
    except yaml.reader.ReaderError as exc:
        raise YamlSyntaxError(
            Problem(
                path=path,
                line=text[: exc.position].count("\n") + 1,
                field="",
                message=f"invalid YAML: character #x{exc.character:04x} is not allowed",
            )
        ) from None
    except RecursionError:
        # PyYAML's composer recurses per level before _MAX_DEPTH can be checked.
        raise YamlSyntaxError(
            Problem(
                path=path, line=None, field="", message=f"nested more than {_MAX_DEPTH} levels deep"
            )
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "invalid YAML"
        start = exc.context_mark
        if exc.context and start is not None and mark is not None and start.line != mark.line:
            # PyYAML notices an unclosed bracket or quote where parsing fails, often
            # lines later; name where it began too.
            reason += f" ({exc.context} that began at line {start.line + 1})"
        raise YamlSyntaxError(
            Problem(
                path=path,
                line=mark.line + 1 if mark is not None else None,
                field="",
                message=f"invalid YAML: {reason}",
            )
        ) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(
            Problem(path=path, line=None, field="", message=f"invalid YAML: {exc}")
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    lines = builder.lines if builder is not None and node is not None else {}
    return Located(data=data, lines=LineMap(path=path, lines=lines))


def _expanded_size(node: Node, sizes: dict[int, int], depth: int) -> int:
    """How many values ``node`` becomes once its aliases are expanded, counted cheaply.

    An alias is the same node object again, so each distinct node is sized once: an
    alias bomb of a few hundred bytes is refused at once instead of after millions of
    values are built. Beyond ``_MAX_DEPTH`` (a recursive alias, say) it stops counting
    and leaves the builder to report the nesting.
    """
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if depth <= _MAX_DEPTH:
        if isinstance(node, MappingNode):
            size += sum(_expanded_size(v, sizes, depth + 1) for _, v in node.value)
        elif isinstance(node, SequenceNode):
            size += sum(_expanded_size(child, sizes, depth + 1) for child in node.value)
    sizes[id(node)] = size
    return size


class _Builder:
    """Builds plain data from composed nodes, recording each value's line."""

    def __init__(self, loader: yaml.SafeLoader, path: str) -> None:
        self.loader = loader
        self.path = path
        self.lines: dict[PathKey, int] = {}
        self.count = 0

    def fail(self, node: Node, loc: PathKey, message: str) -> YamlSyntaxError:
        line = node.start_mark.line + 1
        return YamlSyntaxError(
            Problem(path=self.path, line=line, field=format_loc(loc), message=message)
        )

    def build(self, node: Node, loc: PathKey, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise self.fail(node, loc, f"nested more than {_MAX_DEPTH} levels deep")
        self.count += 1
        if self.count > _MAX_NODES:
            raise self.fail(node, loc, f"more than {_MAX_NODES} values (aliases expanding?)")
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            self.loader.flatten_mapping(node)  # resolves `<<` merge keys
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    raise self.fail(key_node, loc, "a key must be a plain value, not a list or map")
                # Keys are names in every routewatch format, so `1:` or `yes:` is
                # kept as the text the person wrote.
                key = str(key_node.value)
                if key in out:
                    raise self.fail(key_node, loc, f"duplicate key {key!r}")
                self.lines[(*loc, key)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*loc, key), depth + 1)
            return out
        if isinstance(node, SequenceNode):
            return [self.build(child, (*loc, i), depth + 1) for i, child in enumerate(node.value)]
        if node.tag in _KEPT_AS_TEXT:
            # Dates and timestamps: routewatch's formats have none, and constructing
            # one fails on a date-like text that is no date (`2026-13-01`).
            return str(node.value)
        try:
            value = self.loader.construct_object(node)
        except Exception as exc:  # `!!int abc`, `!!bool maybe`, `!!int ""`, an unknown tag
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            reason = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else exc
            raise self.fail(node, loc, f"cannot read {node.value!r} as {tag}: {reason}") from None
        if not isinstance(value, str | int | float | bool) and value is not None:
            # Binary and the like: routewatch's formats have none; keep the text.
            return str(node.value)
        return value
