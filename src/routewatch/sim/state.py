"""The simulator's state and decisions, apart from HTTP: scenario, overrides, draws, counts.

``Simulator`` is what the Starlette app in ``app`` holds: it resolves a model's
behaviour for a logical day (cached), picks a fault, composes the answer (an eval
item's, a judge verdict, or a generic one) and counts outcomes for ``/admin/stats``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from routewatch.errors import InputError, Problem
from routewatch.evalset import EvalSet
from routewatch.sim.answers import AnswerBook, generic_answer, item_answer, unit
from routewatch.sim.scenario import FAULT_KINDS, Behaviour, Faults, Scenario
from routewatch.sim.verdicts import fill_schema, find_judge_input, matches, nudge_grades


@dataclass(frozen=True, slots=True, kw_only=True)
class Moment:
    """When a request happens in the logical run, from the client's headers."""

    day: date
    """Logical day: picks the scenario's ``changes``."""
    sample: int = 0
    """Sample index of the item in the run."""
    seeded: bool
    """True when the client named the logical time: draws are then reproducible."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What the model says, and which outcome it is counted as."""

    content: str
    outcome: str
    """``ok`` for an answer, ``judge`` for a verdict."""


class Simulator:
    """The running simulator: the scenario, admin overrides, the answer book and counts."""

    def __init__(self, scenario: Scenario, eval_sets: Mapping[str, EvalSet]) -> None:
        self.book = AnswerBook(eval_sets)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.replace(scenario)

    def replace(self, scenario: Scenario) -> None:
        """Start using ``scenario``; admin overrides are dropped."""
        self.scenario = scenario
        self.overrides: dict[str, Behaviour] = {}
        # Latency and fault draws: a simulation, not security.
        self.rng = random.Random(scenario.seed)  # noqa: S311
        self._cache: dict[tuple[str, date], Behaviour] = {}

    def behaviour(self, model: str, day: date) -> Behaviour:
        """The behaviour of ``model`` on ``day``, overrides included."""
        key = (model, day)
        found = self._cache.get(key)
        if found is None:
            found = self.scenario.behaviour(model, day, self.overrides.get(model))
            self._cache[key] = found
        return found

    def patch(self, model: str, fields: Behaviour) -> Behaviour:
        """Override the fields set in ``fields`` for ``model`` from now on, whatever the day.

        Returns the new override (earlier overrides of other fields are kept).

        Raises:
            InputError: the override makes the model's behaviour invalid on some day.
        """
        layers = [fields.model_dump(exclude_unset=True)]
        if model in self.overrides:
            layers.insert(0, self.overrides[model].model_dump(exclude_unset=True))
        merged: dict[str, Any] = {}
        for layer in layers:
            for key, value in layer.items():
                merged[key] = {**merged.get(key, {}), **value} if key == "faults" else value
        override = Behaviour.model_validate(merged)
        reason = self.scenario.first_invalid(model, override)
        if reason is not None:
            raise InputError([Problem(path="override", line=None, field=model, message=reason)])
        self.overrides[model] = override
        self._cache.clear()
        return override

    def unpatch(self, model: str) -> None:
        """Drop the admin override of ``model``."""
        self.overrides.pop(model, None)
        self._cache.clear()

    def count(self, model: str, outcome: str) -> None:
        """Count one request of ``model`` with ``outcome`` for ``/admin/stats``."""
        self.counts[(model, outcome)] += 1

    def stats(self) -> dict[str, Any]:
        """Request counts in total, per outcome, and per model and outcome."""
        outcomes: Counter[str] = Counter()
        models: dict[str, dict[str, int]] = {}
        for (model, outcome), n in sorted(self.counts.items()):
            outcomes[outcome] += n
            models.setdefault(model, {})[outcome] = n
        return {"requests": sum(outcomes.values()), "outcomes": dict(outcomes), "models": models}

    def latency_s(self, behaviour: Behaviour) -> float:
        """A latency draw, in seconds."""
        return behaviour.latency_ms.sample_ms(self.rng.gauss(0.0, 1.0)) / 1000

    def fault(self, faults: Faults) -> str | None:
        """The fault that hits this request, if any; a fresh draw each time, so retries can pass."""
        if faults.total_rate <= 0:
            return None
        u = self.rng.random()
        for kind in FAULT_KINDS:
            u -= getattr(faults, kind)
            if u < 0:
                return kind
        return None

    def draw(self, moment: Moment, *parts: object) -> float:
        """A uniform draw: fixed by the seed, ``parts``, day and sample when ``moment.seeded``."""
        if not moment.seeded:
            return self.rng.random()
        return unit(self.scenario.seed, *parts, moment.day.isoformat(), moment.sample)

    def answer(
        self,
        *,
        model: str,
        behaviour: Behaviour,
        messages: Sequence[tuple[str, str]],
        schema: dict[str, Any] | None,
        moment: Moment,
    ) -> Answer:
        """What ``model`` answers; ``schema`` set means a judge call wanting that JSON."""
        texts = [content for _, content in messages]
        if schema is not None:
            return Answer(
                content=self._verdict(model, behaviour, texts, schema, moment), outcome="judge"
            )
        item = self.book.find(messages)
        if item is None:
            return Answer(content=generic_answer(texts), outcome="ok")
        p = item_probability(behaviour, seed=self.scenario.seed, key=item.key)
        correct = self.draw(moment, model, item.key, "correct") < p
        wrong_u = self.draw(moment, model, item.key, "wrong")
        return Answer(
            content=item_answer(item, correct=correct, u=wrong_u, prompt=texts), outcome="ok"
        )

    def _verdict(
        self,
        model: str,
        behaviour: Behaviour,
        texts: list[str],
        schema: dict[str, Any],
        moment: Moment,
    ) -> str:
        prompt = "\n".join(texts)
        found = find_judge_input(prompt)
        if found is None:
            good = True
        else:
            right = matches(found.reference, found.output)
            digest = hashlib.blake2b(prompt.encode("utf-8"), digest_size=8).hexdigest()
            honest = self.draw(moment, model, digest, "verdict") < behaviour.quality
            good = right if honest else not right
        verdict = fill_schema(schema, good=good)
        if behaviour.grade_noise > 0:
            flip = self.draw(moment, model, prompt, "noise") - behaviour.grade_noise
            up = self.draw(moment, model, prompt, "noise up")
            verdict = nudge_grades(verdict, schema, flip=flip, up=up)
        return json.dumps(verdict)


def item_probability(behaviour: Behaviour, *, seed: int, key: str) -> float:
    """The probability that an item is answered with its reference.

    ``quality`` plus the item's fixed offset in ``[-s, s]``, where ``s`` is
    ``spread`` narrowed near 0 and 1, so quality 1.0 always and 0.0 never answers
    right and the mean over items stays ``quality``.
    """
    quality = behaviour.quality
    spread = min(behaviour.spread, quality, 1 - quality)
    return quality + (2 * unit(seed, "difficulty", key) - 1) * spread
