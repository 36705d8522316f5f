"""Scenario files for the simulator: how each simulated model behaves, and from which day.

A ``Scenario`` is read from YAML by ``load_scenario`` (``routewatch sim serve
--scenario FILE``) and resolved per request by ``Scenario.behaviour``: the
``defaults``, then the model's own fields, then every ``changes`` entry whose
``from`` day has come, then any admin override, each layer replacing what it names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from routewatch._yamlpos import LineMap, YamlSyntaxError, format_loc, load_yaml, read_source
from routewatch.errors import InputError, Problem, display_path

Z95 = 1.6448536269514722
"""The standard normal's 95th percentile: a lognormal's p95 is ``median * exp(Z95 * sigma)``."""


class _Model(BaseModel):
    # Infinite waits and NaN probabilities are typos, never scenarios.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Latency(_Model):
    """Total time of an answer: lognormal from ``median`` and ``p95``, or ``fixed``."""

    median: float | None = Field(default=None, gt=0)
    """Median milliseconds of the lognormal distribution."""
    p95: float | None = Field(default=None, gt=0)
    """95th-percentile milliseconds; at least ``median``."""
    fixed: float | None = Field(default=None, ge=0)
    """Every answer takes exactly this many milliseconds (instead of median and p95)."""

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if self.fixed is not None:
            if self.median is not None or self.p95 is not None:
                raise ValueError("give either `fixed` or `median` and `p95`, not both")
            return self
        if self.median is None or self.p95 is None:
            raise ValueError("give `median` and `p95` (milliseconds), or `fixed`")
        if self.p95 < self.median:
            raise ValueError(f"p95 ({self.p95}) is below median ({self.median})")
        return self

    @property
    def sigma(self) -> float:
        """The lognormal's shape parameter; 0 for a fixed latency."""
        if self.fixed is not None or self.median is None or self.p95 is None:
            return 0.0
        return math.log(self.p95 / self.median) / Z95

    def sample_ms(self, z: float) -> float:
        """Latency for a standard-normal draw ``z``, capped at ten times the p95."""
        if self.fixed is not None:
            return self.fixed
        median = self.median or 0.0
        return min(median * math.exp(self.sigma * z), 10 * (self.p95 or median))


class Faults(_Model):
    """Per-request probabilities of each fault; at most one fault hits a request."""

    rate_limited: float = Field(default=0.0, ge=0, le=1)
    """HTTP 429 with ``Retry-After``."""
    retry_after_s: float = Field(default=1.0, ge=0)
    """Seconds sent in ``Retry-After`` (fractions allowed) and ``retry-after-ms``."""
    server_error: float = Field(default=0.0, ge=0, le=1)
    """HTTP 500 with an OpenAI-style error body."""
    hang: float = Field(default=0.0, ge=0, le=1)
    """Wait ``hang_s`` before answering, so a client with a shorter timeout gives up."""
    hang_s: float = Field(default=30.0, gt=0)
    """Seconds a hanging request waits."""
    bad_json: float = Field(default=0.0, ge=0, le=1)
    """HTTP 200 with an HTML gateway error page instead of JSON."""
    truncated: float = Field(default=0.0, ge=0, le=1)
    """The JSON body cut in half; a stream that stops without ``finish_reason`` or ``[DONE]``."""
    reset: float = Field(default=0.0, ge=0, le=1)
    """The connection is reset before any response is sent."""

    @model_validator(mode="after")
    def _rates_fit(self) -> Self:
        if self.total_rate > 1 + 1e-9:
            raise ValueError(f"fault rates add up to {self.total_rate:g}; at most 1")
        return self

    @property
    def total_rate(self) -> float:
        """The probability that a request meets some fault."""
        return float(sum(getattr(self, name) for name in FAULT_KINDS))


FAULT_KINDS = ("rate_limited", "server_error", "hang", "bad_json", "truncated", "reset")
"""Fault names, in the order a request's draw walks their rates."""


class Behaviour(_Model):
    """How one model answers; in a change or an override, only the fields given apply."""

    quality: float = Field(default=0.9, ge=0, le=1)
    """Probability of answering an eval item with its reference; for a judge, of a right verdict."""
    spread: float = Field(default=0.1, ge=0, le=1)
    """Per-item difficulty: each item's probability is ``quality`` plus a fixed offset in
    ``[-spread, +spread]`` drawn from the item's hash."""
    latency_ms: Latency = Field(default_factory=lambda: Latency(median=50, p95=120))
    """Total time of an answer."""
    ttft_fraction: float = Field(default=0.3, ge=0, le=1)
    """Share of the latency before the first token of a streamed answer."""
    faults: Faults = Field(default_factory=Faults)
    """Fault rates; in a change or override, the rates not named are kept."""
    serve_as: str | None = None
    """Answer as this other model (its behaviour, its name in the body) and add the header
    ``x-litellm-attempted-fallbacks: 1``, like a gateway that fell back."""
    grade_noise: float = Field(default=0.0, ge=0, le=1)
    """For a judge: the probability that a verdict's grade lands one step off (up or
    down, within the scale), drawn afresh per call: judge noise, apart from wrong verdicts."""


class Change(Behaviour):
    """Behaviour fields that take effect from a logical day on."""

    from_: date = Field(alias="from")
    """First logical day (``YYYY-MM-DD``, inclusive) of the change."""


class ModelBehaviour(Behaviour):
    """A model's behaviour and how it changes over logical days."""

    changes: tuple[Change, ...] = ()
    """Changes applied, in date order, from their ``from`` day on."""


class Scenario(_Model):
    """The whole scenario file."""

    seed: int = 0
    """Seeds every draw, so the same logical run gets the same answers."""
    eval_dir: str | None = None
    """Folder of eval sets the simulator recognises; relative to the scenario file."""
    strict_models: bool = False
    """Answer 404 ``model_not_found`` for a model not in ``models`` (else it uses ``defaults``)."""
    defaults: ModelBehaviour = Field(default_factory=ModelBehaviour)
    """Behaviour of every model; its ``changes`` apply to every model."""
    models: dict[str, ModelBehaviour] = Field(default_factory=dict)
    """Per-model behaviour, by the ``model`` name clients send; unnamed fields come from
    ``defaults``."""

    def knows(self, model: str) -> bool:
        """Whether ``model`` is answered at all (always, unless ``strict_models``)."""
        return not self.strict_models or model in self.models

    def behaviour(self, model: str, day: date, override: Behaviour | None = None) -> Behaviour:
        """The behaviour of ``model`` on logical ``day``, with an admin ``override`` last.

        Raises:
            ValidationError: the layers combine into an invalid behaviour (fault rates
                adding up to more than 1).
        """
        return resolve(self._layers(model, day, override))

    def first_invalid(self, model: str | None, override: Behaviour | None = None) -> str | None:
        """Why the behaviour of ``model`` (``None``: an unlisted one) is invalid on some day.

        Every day a change starts on is tried; ``None`` when all of them are valid.
        """
        own = self.models.get(model) if model is not None else None
        days = sorted({c.from_ for c in (*self.defaults.changes, *(own.changes if own else ()))})
        for day in (date.min, *days):
            try:
                resolve(self._layers(model, day, override))
            except ValidationError as exc:
                reason = "; ".join(_short(e) for e in exc.errors(include_url=False))
                return reason if day == date.min else f"from {day:%Y-%m-%d}: {reason}"
        return None

    def _layers(
        self, model: str | None, day: date, override: Behaviour | None
    ) -> list[dict[str, Any]]:
        own = self.models.get(model) if model is not None else None
        layers = [self.defaults.model_dump(exclude={"changes"})]
        if own is not None:
            layers.append(own.model_dump(exclude_unset=True, exclude={"changes"}))
        changes = sorted((*self.defaults.changes, *(own.changes if own else ())), key=_day)
        layers += [
            c.model_dump(exclude_unset=True, exclude={"from_"}) for c in changes if c.from_ <= day
        ]
        if override is not None:
            layers.append(override.model_dump(exclude_unset=True))
        return layers

    def as_json(self) -> dict[str, Any]:
        """The scenario as ``PUT /admin/scenario`` accepts it; partial layers stay partial."""
        out = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        out.update(self.model_dump(mode="json", include={"seed", "eval_dir", "strict_models"}))
        defaults = self.defaults.model_dump(mode="json", exclude={"changes"})
        defaults["changes"] = out.get("defaults", {}).get("changes", [])
        out["defaults"] = defaults
        out.setdefault("models", {})
        return out


def _day(change: Change) -> date:
    return change.from_


def resolve(layers: Iterable[Mapping[str, Any]]) -> Behaviour:
    """Merge behaviour layers, later ones winning; ``faults`` merge field by field.

    Raises:
        ValidationError: the merged behaviour is invalid.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "faults" and isinstance(value, Mapping):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return Behaviour.model_validate(merged)


def _timeline_problems(scenario: Scenario, lines: LineMap) -> list[Problem]:
    """Behaviours that only become invalid once layers combine, e.g. fault rates above 1."""
    problems = []
    shared = scenario.first_invalid(None)
    if shared is not None:
        problems.append(lines.problem(("defaults",), shared))
    for name in scenario.models:
        reason = scenario.first_invalid(name)
        if reason is not None and reason != shared:
            problems.append(lines.problem(("models", name), reason))
    return problems


def _short(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    loc = format_loc(err["loc"])
    return f"{loc}: {msg}" if loc else msg


def load_scenario(path: Path | None) -> Scenario:
    """Read a scenario file; ``None`` gives the built-in default scenario.

    ``eval_dir`` is returned resolved against the file's folder.

    Raises:
        InputError: every problem found, each as ``path:line: field: message``.
    """
    if path is None:
        return Scenario()
    shown = display_path(path)
    try:
        located = load_yaml(read_source(path, shown), shown)
    except YamlSyntaxError as exc:
        raise InputError([exc.problem]) from None
    data = {} if located.data is None else located.data
    if not isinstance(data, dict):
        raise InputError([located.lines.problem((), "a scenario must be a mapping of keys")])
    scenario = parse_scenario(data, located.lines)
    if scenario.eval_dir is not None:
        resolved = (path.resolve().parent / scenario.eval_dir).resolve()
        if not resolved.is_dir():
            message = f"folder not found: {resolved} (relative paths start at this file)"
            raise InputError([located.lines.problem(("eval_dir",), message)])
        scenario = scenario.model_copy(update={"eval_dir": str(resolved)})
    return scenario


def parse_scenario(data: Any, lines: LineMap | None = None) -> Scenario:
    """Validate scenario data (from a file or an admin request).

    Raises:
        InputError: every problem found, located by ``lines`` when given.
    """
    where = lines or LineMap(path="scenario")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise InputError(
            where.from_validation(
                exc, every_key='see README.md, "The simulator", for every key', model=Scenario
            )
        ) from None
    problems = _timeline_problems(scenario, where)
    if problems:
        raise InputError(problems)
    return scenario


def eval_dir_for(scenario: Scenario, explicit: Path | None, cwd: Path) -> Path | None:
    """Where the simulator's eval sets come from: ``--evals``, the scenario, ``./evals``, none."""
    if explicit is not None:
        return explicit
    if scenario.eval_dir is not None:
        return Path(scenario.eval_dir)
    local = cwd / "evals"
    return local if local.is_dir() else None
