"""``evals/*.yaml|jsonl`` -> ``EvalSet``: the fixed questions every route is replayed on.

An eval set's ``version`` is a hash of what affects scoring (items, checks,
criteria, scale, threshold), not of comments, key order, item order or tags, so
editing a description does not start a new baseline. Each item has its own
``hash`` so detection can pair an item with its history across versions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Self

import jsonschema
import regex
import yaml
from pydantic import VERSION as PYDANTIC_VERSION
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from routewatch import __version__, jsonstrict
from routewatch._yamlpos import LineMap, YamlSyntaxError, load_yaml, read_source
from routewatch.errors import EvalSetError, Problem, UsageError, display_path

HASH_LENGTH = 16
"""Hex digits kept of a SHA-256: 64 bits, ample for the versions of one eval set."""

HASH_RECIPE = "1"
"""Names how ``EvalSet.version`` and ``Item.hash`` are computed from a file; part of every
``EvalSet.source_digest``, with the versions of routewatch, PyYAML and pydantic. Change
it with any change to those computations (``tests/test_evalset.py`` pins their values),
so that digests stored before stop matching and each set's hashes are computed afresh."""

EVAL_SUFFIXES = (".yaml", ".yml", ".jsonl")

DEFAULT_PASS_THRESHOLD = 0.7
"""An item passes when its score reaches this (``pass_threshold``)."""


class CheckKind(StrEnum):
    """The deterministic checks an item can carry; values are the eval-file keys."""

    contains = "contains"
    not_contains = "not_contains"
    icontains = "icontains"
    regex = "regex"
    equals = "equals"
    max_chars = "max_chars"
    min_chars = "min_chars"
    json_schema = "json_schema"


_TEXT_CHECKS = {
    CheckKind.contains,
    CheckKind.not_contains,
    CheckKind.icontains,
    CheckKind.regex,
    CheckKind.equals,
}
_COUNT_CHECKS = {CheckKind.max_chars, CheckKind.min_chars}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(_Model):
    """One deterministic check, written in the file as a one-key map: ``{contains: "30 days"}``."""

    kind: CheckKind
    """Which check."""
    arg: str | int | dict[str, Any]
    """The check's argument: text, a character count, or a JSON schema."""

    @model_validator(mode="before")
    @classmethod
    def _from_one_key_map(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) != {"kind", "arg"}:
            if len(value) != 1:
                raise ValueError(
                    'a check is a map with exactly one key, e.g. `- contains: "30 days"`'
                )
            ((kind, arg),) = value.items()
            known = ", ".join(k.value for k in CheckKind)
            if kind not in CheckKind.__members__:
                raise ValueError(f"unknown check kind {kind!r}; known: {known}")
            return {"kind": kind, "arg": arg}
        return value

    @model_validator(mode="after")
    def _arg_fits_kind(self) -> Check:
        kind, arg = self.kind, self.arg
        if kind in _TEXT_CHECKS and not isinstance(arg, str):
            raise ValueError(f"`{kind}` takes a string")
        if kind in _COUNT_CHECKS and (isinstance(arg, bool) or not isinstance(arg, int) or arg < 0):
            raise ValueError(f"`{kind}` takes a whole number of characters >= 0")
        if kind is CheckKind.regex:
            try:
                regex.compile(str(arg))  # as checks.py runs it
            except regex.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from None
        if kind is CheckKind.json_schema:
            if not isinstance(arg, dict):
                raise ValueError("`json_schema` takes a JSON schema (a map)")
            try:
                jsonschema.validators.validator_for(arg).check_schema(arg)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a valid JSON schema: {exc.message}") from None
        return self

    def as_file_form(self) -> dict[str, Any]:
        """The check as written in an eval file."""
        return {self.kind.value: self.arg}


class Message(_Model):
    """One chat message of an item's prompt."""

    role: Literal["system", "user", "assistant", "developer", "tool"]
    """Chat role."""
    content: str
    """Message text."""


class _Prompted(_Model):
    """A prompt given as ``input`` (one user message) or as ``messages``."""

    input: str | None = None
    """Shorthand for ``messages: [{role: user, content: ...}]``."""
    messages: tuple[Message, ...] | None = None
    """The full prompt, when more than one user message is needed."""

    @model_validator(mode="after")
    def _one_prompt(self) -> Self:
        if (self.input is None) == (self.messages is None):
            raise ValueError("give exactly one of `input` or `messages`")
        if self.messages is not None and not self.messages:
            raise ValueError("`messages` is empty")
        if self.input is not None and not self.input.strip():
            raise ValueError("`input` is empty: the model would be asked nothing")
        return self

    @cached_property
    def prompt(self) -> tuple[Message, ...]:
        """The messages sent to the model, with ``input`` expanded."""
        if self.messages is not None:
            return self.messages
        return (Message(role="user", content=self.input or ""),)


class Item(_Prompted):
    """One eval item: a prompt, what a good answer looks like, and how to check it."""

    id: str = Field(min_length=1, max_length=200)
    """Unique within the set; pairs an item's results over time."""
    reference: str | None = None
    """The expected answer, shown to the judge."""
    checks: tuple[Check, ...] = ()
    """Deterministic checks, each scored 0 or 1."""
    tags: tuple[str, ...] = ()
    """Labels for grouping in reports; do not affect scoring."""
    weight: float = Field(default=1.0, gt=0)
    """Weight of this item in the run score."""
    critical: bool = False
    """Pages on its own when it fails in consecutive runs."""
    human_score: float | None = None
    """A person's grade on the set's scale, for judge agreement."""

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @cached_property
    def hash(self) -> str:
        """Hash of what decides this item's score: prompt, reference and checks."""
        checks = sorted(_canonical(c.as_file_form()) for c in self.checks)
        return content_hash(
            {
                "messages": [{"role": m.role, "content": m.content} for m in self.prompt],
                "reference": self.reference,
                "checks": checks,
            }
        )


class Canary(_Prompted):
    """A fixed output with a known verdict, judged every run to watch the judge itself."""

    reference: str | None = None
    """The reference shown to the judge."""
    output: str
    """The fixed output under judgement."""
    expect: dict[str, float]
    """Expected grade per criterion, on the set's scale."""

    @model_validator(mode="after")
    def _expects_something(self) -> Canary:
        if not self.expect:
            raise ValueError("`expect` needs at least one criterion")
        return self


class EvalSet(_Model):
    """A named, versioned list of items replayed against routes."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """The set's name; must match the file name (``evals/<name>.yaml``)."""
    description: str = ""
    """What the set is for."""
    judge: str | None = None
    """Key of ``judges`` in routewatch.yaml that scores ``criteria``."""
    scale: tuple[int, int] = (1, 5)
    """The judge's grade range, normalised to 0..1."""
    criteria: dict[str, str] = Field(default_factory=dict)
    """Criterion name -> what the judge checks; each scored separately."""
    pass_threshold: float = Field(default=DEFAULT_PASS_THRESHOLD, ge=0, le=1)
    """An item passes when its score is at least this."""
    items: tuple[Item, ...] = Field(min_length=1)
    """The items; ids unique."""
    canaries: tuple[Canary, ...] = ()
    """Judge drift guards."""
    judge_template: str | None = Field(default=None, min_length=1)
    """A judge prompt template of the set's own (Jinja2, a path relative to the eval
    file) instead of the packaged one; it gets the same variables, escaped the same way,
    and must print the output as ``<output>{{ output }}</output>``."""
    pairwise: bool = False
    """Pairwise mode: after a run's detection, the judge compares today's output of each
    item whose score fell below its baseline with the item's last good output, in both
    orders, and the preference is stored. Needs ``criteria`` (a judge); not part of the
    version, so switching it on keeps the baseline."""
    pairwise_max_items: int = Field(default=10, ge=1, le=1000)
    """Most items compared per run in pairwise mode (two judge calls each), those whose
    score fell most first."""

    _lines: LineMap | None = PrivateAttr(default=None)
    _judge_template_text: str | None = PrivateAttr(default=None)
    _source_digest: str | None = PrivateAttr(default=None)

    @property
    def source_digest(self) -> str | None:
        """A SHA-256 of the file this set was loaded from, exactly as read; None otherwise.

        It covers the file's name and text, its judge template's text, ``HASH_RECIPE``
        and the versions of routewatch, PyYAML and pydantic: everything ``version`` and
        the item hashes are computed from. So a set whose digest is stored has the
        version and item hashes stored with it, and ``adopt_hashes`` can take them
        instead of hashing every item again.
        """
        return self._source_digest

    def adopt_hashes(self, version: str, item_hashes: Mapping[str, str]) -> None:
        """Take ``version`` and each item's ``hash`` as computed before, for this same source.

        For a set whose ``source_digest`` was stored with them (``ensure_eval_set``):
        hashing a 1,000-item set costs tens of milliseconds before a replay's first call.
        Hashes already computed are kept.

        Raises:
            ValueError: ``item_hashes`` does not name exactly this set's items.
        """
        if len(item_hashes) != len(self.items) or any(i.id not in item_hashes for i in self.items):
            raise ValueError(f"stored item hashes do not match eval set {self.name}'s items")
        # Where cached_property keeps its value, so reading the property returns it.
        self.__dict__.setdefault("version", version)
        for item in self.items:
            item.__dict__.setdefault("hash", item_hashes[item.id])

    @property
    def judge_template_text(self) -> str | None:
        """The text of ``judge_template``, read when the set was loaded; None without one.

        Raises:
            UsageError: the set names a template but was not loaded from a file.
        """
        if self.judge_template is not None and self._judge_template_text is None:
            raise UsageError(
                f"eval set {self.name} names judge_template {self.judge_template!r} but was "
                "not loaded from a file; load it with load_eval_set"
            )
        return self._judge_template_text

    def problem(self, loc: tuple[str | int, ...], message: str) -> Problem:
        """A Problem located in this set's file (when it was loaded from one)."""
        if self._lines is None:
            return Problem(path=f"eval set {self.name}", line=None, field="", message=message)
        return self._lines.problem(loc, message)

    @model_validator(mode="after")
    def _consistent(self) -> EvalSet:
        lo, hi = self.scale
        if lo >= hi:
            raise ValueError(f"scale [{lo}, {hi}]: the first number must be below the second")
        return self

    @cached_property
    def _rules_key(self) -> str | None:
        """A hash of how this set turns an item's results into its score and pass.

        The judging (judge, criteria, scale, own template) and a non-default pass
        threshold; None for a set scored by checks alone at the default threshold.
        """
        material: dict[str, Any] = {}
        if self.criteria:
            material |= {"judge": self.judge, "criteria": self.criteria, "scale": list(self.scale)}
            if self.judge_template is not None:
                material["judge_template"] = content_hash(self.judge_template_text)
        if self.pass_threshold != DEFAULT_PASS_THRESHOLD:
            material["pass_threshold"] = self.pass_threshold
        return content_hash(material) if material else None

    def history_key(self, item: Item) -> str:
        """What ``item``'s outcomes are paired on across versions (``item_outcomes.item_hash``).

        The item's own ``hash`` combined with the set's scoring rules, so an edited rubric
        or threshold starts the item's history afresh: grades given under other rules are
        no baseline. Sets scored by checks alone at the default threshold use the hash.
        """
        rules = self._rules_key
        return item.hash if rules is None else content_hash({"item": item.hash, "rules": rules})

    @cached_property
    def version(self) -> str:
        """Hash of everything that affects scoring; comments, order and tags excluded."""
        items = sorted((item.id, item.hash, item.weight) for item in self.items)
        material: dict[str, Any] = {
            "judge": self.judge,
            "scale": list(self.scale),
            "criteria": self.criteria,
            "pass_threshold": self.pass_threshold,
            "items": [list(i) for i in items],
        }
        if self.judge_template is not None:
            # The template's text, not its path: an edited prompt is a new version.
            # Absent otherwise, so sets without one keep their versions.
            material["judge_template"] = content_hash(self.judge_template_text)
        return content_hash(material)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""What ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
builds on every call, built once: hashing a large eval set encodes thousands of values."""


def _canonical(value: Any) -> str:
    return _CANONICAL.encode(value)


def content_hash(value: Any) -> str:
    """A short stable hash of a JSON-able value, independent of key order."""
    return hashlib.sha256(_canonical(value).encode("utf-8")).hexdigest()[:HASH_LENGTH]


def load_eval_set(path: Path) -> EvalSet:
    """Load and validate one eval-set file (``.yaml``/``.yml`` or ``.jsonl``).

    Raises:
        EvalSetError: every problem in the file, each as ``path:line: field: message``.
    """
    shown = display_path(path)
    try:
        text = read_source(path, shown)
        if path.suffix == ".jsonl":
            data, lines = _read_jsonl(text, shown)
        else:
            located = load_yaml(text, shown)
            data, lines = located.data, located.lines
    except YamlSyntaxError as exc:
        raise EvalSetError([exc.problem]) from None
    if not isinstance(data, dict):
        raise EvalSetError([lines.problem((), "an eval set must be a mapping with `items:`")])
    data = {"name": path.stem, **data}
    evalset = _validate(data, lines, path.stem, path.parent)
    evalset._source_digest = _source_digest(path.name, text, evalset._judge_template_text)
    return evalset


def _source_digest(file_name: str, text: str, template_text: str | None) -> str:
    # The parsers' versions too: the same text read by another YAML or pydantic release
    # is hashed afresh rather than trusted to give the same values.
    versions = [HASH_RECIPE, __version__, PYDANTIC_VERSION, yaml.__version__]
    material = [*versions, file_name, text, template_text]
    return hashlib.sha256(json.dumps(material).encode("utf-8")).hexdigest()


def _validate(data: dict[str, Any], lines: LineMap, stem: str, folder: Path) -> EvalSet:
    problems: list[Problem] = []
    try:
        evalset = EvalSet.model_validate(data)
    except ValidationError as exc:
        problems += lines.from_validation(exc, model=EvalSet)
        raise EvalSetError(problems) from None
    if evalset.name != stem:
        problems.append(
            lines.problem(("name",), f"{evalset.name!r} must match the file name {stem!r}")
        )
    seen: dict[str, int] = {}
    lo, hi = evalset.scale
    for i, item in enumerate(evalset.items):
        if item.id in seen:
            problems.append(
                lines.problem(
                    ("items", i, "id"),
                    f"duplicate item id {item.id!r} (first at items[{seen[item.id]}])",
                )
            )
        seen.setdefault(item.id, i)
        if item.human_score is not None and not lo <= item.human_score <= hi:
            problems.append(
                lines.problem(
                    ("items", i, "human_score"), f"{item.human_score} is outside scale [{lo}, {hi}]"
                )
            )
    for i, canary in enumerate(evalset.canaries):
        for criterion, grade in canary.expect.items():
            if criterion not in evalset.criteria:
                problems.append(
                    lines.problem(
                        ("canaries", i, "expect", criterion),
                        f"unknown criterion {criterion!r}; the set's criteria: "
                        f"{', '.join(evalset.criteria) or '(none)'}",
                    )
                )
            elif not lo <= grade <= hi:
                problems.append(
                    lines.problem(
                        ("canaries", i, "expect", criterion),
                        f"{grade} is outside scale [{lo}, {hi}]",
                    )
                )
    if evalset.canaries and not evalset.criteria:
        problems.append(lines.problem(("canaries",), "canaries need `criteria` to judge"))
    if evalset.pairwise and not evalset.criteria:
        problems.append(
            lines.problem(
                ("pairwise",),
                "pairwise mode needs a judge: give the set `criteria` (and `judge:` unless "
                "the judge named `default` should compare)",
            )
        )
    template_text = None
    if evalset.judge_template is not None:
        template_text, template_problems = _read_judge_template(
            evalset.judge_template, folder, lines
        )
        problems += template_problems
        if not evalset.criteria:
            problems.append(
                lines.problem(("judge_template",), "a judge template needs `criteria` to judge")
            )
    if problems:
        raise EvalSetError(problems)
    evalset._lines = lines
    evalset._judge_template_text = template_text
    return evalset


def _read_judge_template(
    name: str, folder: Path, lines: LineMap
) -> tuple[str | None, list[Problem]]:
    """The text of an eval set's judge template, or the problems that keep it from use."""
    # Imported here: the judge's prompt module builds on this module's Message.
    from routewatch.judge.prompt import template_faults

    path = folder / name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not found" if isinstance(exc, FileNotFoundError) else str(exc)
        message = f"cannot read judge template {display_path(path)}: {reason}"
        return None, [lines.problem(("judge_template",), message)]
    problems = []
    for fault in template_faults(text):
        if fault.line is None:
            message = f"judge template {display_path(path)}: {fault.message}"
            problems.append(lines.problem(("judge_template",), message))
        else:
            problems.append(
                Problem(
                    path=display_path(path),
                    line=fault.line,
                    field="judge_template",
                    message=fault.message,
                )
            )
    return text, problems


_SET_HEADER_KEY = "eval_set"


def _read_jsonl(text: str, shown: str) -> tuple[dict[str, Any], LineMap]:
    """One item a line; an optional first line ``{"eval_set": {...}}`` holds set fields."""
    problems: list[Problem] = []
    header: dict[str, Any] = {}
    items: list[Any] = []
    lines: dict[tuple[str | int, ...], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = jsonstrict.loads(raw)
        except jsonstrict.DuplicateKeyError as exc:
            problems.append(Problem(path=shown, line=number, field="", message=str(exc)))
            continue
        except RecursionError:
            problems.append(
                Problem(path=shown, line=number, field="", message="JSON nested too deeply")
            )
            continue
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(path=shown, line=number, field="", message=f"invalid JSON: {exc.msg}")
            )
            continue
        if isinstance(value, dict) and set(value) == {_SET_HEADER_KEY}:
            if items or header:
                problems.append(
                    Problem(
                        path=shown,
                        line=number,
                        field=_SET_HEADER_KEY,
                        message="the eval_set line must come first, once",
                    )
                )
            elif not isinstance(value[_SET_HEADER_KEY], dict):
                problems.append(
                    Problem(
                        path=shown,
                        line=number,
                        field=_SET_HEADER_KEY,
                        message="must be a map of set fields (description, judge, ...)",
                    )
                )
            else:
                header = value[_SET_HEADER_KEY]
                lines[()] = number
                for key in header:
                    lines[(key,)] = number
            continue
        lines[("items", len(items))] = number
        items.append(value)
    if problems:
        raise EvalSetError(problems)
    if "items" in header:
        raise EvalSetError(
            [
                Problem(
                    path=shown,
                    line=lines.get(("items",)),
                    field="eval_set.items",
                    message="items go one per line, not in the eval_set line",
                )
            ]
        )
    lines.setdefault((), 1)
    lines.setdefault(("items",), 1)
    return {**header, "items": items}, LineMap(path=shown, lines=lines)


def load_eval_dir(directory: Path) -> dict[str, EvalSet]:
    """Load every eval set in ``directory``, collecting the problems of all files.

    Raises:
        EvalSetError: every problem in every file, raised once.
    """
    folder = read_eval_dir(directory)
    if folder.problems:
        raise EvalSetError(folder.problems)
    return folder.sets


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalFolder:
    """What ``read_eval_dir`` found in an eval folder."""

    sets: dict[str, EvalSet]
    """The sets that loaded, by name."""
    names: tuple[str, ...] | None
    """The name of every set the folder has a file for, whether it loaded or not (a set's
    name must be its file's); None when the folder cannot be read."""
    problems: list[Problem]
    """Every problem in every file."""


def eval_dir_fingerprint(
    directory: Path, templates: Iterable[str] = ()
) -> tuple[tuple[str, int, int], ...]:
    """Path, modification time and size of the eval files and judge templates.

    The eval files are those in ``directory``; the templates are named relative to it,
    as eval sets name them.

    It changes when a file is edited, added or removed; an unreadable one counts as
    missing (``-1``).
    """

    def stat(path: Path) -> tuple[str, int, int]:
        try:
            info = path.stat()
        except OSError:
            return (str(path), -1, -1)
        return (str(path), info.st_mtime_ns, info.st_size)

    try:
        files = sorted(p for p in directory.iterdir() if p.suffix in EVAL_SUFFIXES)
    except OSError:
        files = [directory]
    return tuple(stat(p) for p in [*files, *(directory / t for t in sorted(set(templates)))])


def read_eval_dir(directory: Path) -> EvalFolder:
    """Load each eval set in ``directory`` that loads, collecting the others' problems."""
    try:
        entries = list(directory.iterdir()) if directory.is_dir() else None
    except OSError as exc:
        problem = Problem(
            path=display_path(directory),
            line=None,
            field="",
            message=f"cannot read the eval folder: {exc.strerror or exc}",
        )
        return EvalFolder(sets={}, names=None, problems=[problem])
    if entries is None:
        problem = Problem(
            path=display_path(directory),
            line=None,
            field="",
            message=(
                "is a file, not the eval folder (see `eval_dir` in routewatch.yaml)"
                if directory.exists()
                else "eval folder not found (see `eval_dir` in routewatch.yaml)"
            ),
        )
        return EvalFolder(sets={}, names=None, problems=[problem])
    problems: list[Problem] = []
    sets: dict[str, EvalSet] = {}
    files = sorted(p for p in entries if p.suffix in EVAL_SUFFIXES and p.is_file())
    for path in files:
        try:
            evalset = load_eval_set(path)
        except EvalSetError as exc:
            problems += exc.problems
            continue
        if evalset.name in sets:
            problems.append(
                Problem(
                    path=display_path(path),
                    line=None,
                    field="name",
                    message=f"another file already defines eval set {evalset.name!r}",
                )
            )
            continue
        sets[evalset.name] = evalset
    names = tuple(dict.fromkeys(p.stem for p in files))
    return EvalFolder(sets=sets, names=names, problems=problems)
