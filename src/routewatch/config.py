"""``routewatch.yaml`` -> ``Config``: the first step of the flow, read by every command.

``load_config(path, env)`` is the one place the environment touches configuration:
``ROUTEWATCH_DATABASE_URL`` overrides ``database_url`` and ``${VAR}`` expands in
URLs. Secrets never live in the file; fields ending in ``_env`` name environment
variables that ``secret()`` reads when a request is made. Underneath it,
``read_config`` checks as much of a broken file as it can, for ``validate``.

Over 800 lines: a docstring under each field makes the models the config reference.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from routewatch._yamlpos import LineMap, YamlSyntaxError, clean_loc, load_yaml, read_source
from routewatch.cron import parse_cron
from routewatch.errors import ConfigError, MissingSecretError, Problem, display_path

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Names of routes, providers, judges and policies: they appear in URLs and file names."""

ENV_VAR_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EXPAND = re.compile(r"\$\{([^}]*)\}")
DATABASE_URL_ENV = "ROUTEWATCH_DATABASE_URL"
MAX_TOP_LOGPROBS = 20
"""The most ``top_logprobs`` OpenAI's chat completions return per token."""


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    if value.startswith("~"):
        try:
            Path(value).expanduser()
        except RuntimeError:  # ~name of a user this machine does not have
            raise ValueError(f"cannot expand {value.split('/')[0]!r}: no such user") from None
    return value


PathText = Annotated[str, AfterValidator(_no_nul)]
"""A path or URL: no NUL character, which no file system takes, and no ``~user`` of a
user this machine lacks (both crashed resolving)."""


class _Model(BaseModel):
    # No infinities: `timeout_s: .inf` would let a hanging provider stall a run forever.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Price(_Model):
    """What a model costs, in US dollars per million tokens."""

    input_per_mtok: float = Field(default=0.0, ge=0)
    """Price of one million prompt tokens."""
    output_per_mtok: float = Field(default=0.0, ge=0)
    """Price of one million completion tokens."""


class Provider(_Model):
    """An OpenAI-compatible endpoint, shared by every route and judge that names it."""

    base_url: str
    """Base URL up to ``/v1``; ``/chat/completions`` is appended to its path (a query is
    kept). ``${VAR}`` expands."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key; read when a call is made."""
    max_concurrency: StrictInt = Field(default=16, ge=1, le=1000)
    """Requests in flight at once, across every route and judge on this provider."""
    requests_per_minute: StrictInt | None = Field(default=600, ge=1)
    """Request rate limit across this provider; null for none."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Total deadline of one attempt, in seconds."""
    max_retries: StrictInt = Field(default=4, ge=0, le=20)
    """Retries after the first attempt on 429, 5xx, timeouts and connection errors."""


class Route(_Model):
    """A model behind a provider, replayed against eval sets on a schedule."""

    provider: str
    """Key of ``providers`` that serves this route."""
    model: str = Field(min_length=1)
    """Model name sent in the request body."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Extra request fields (temperature, max_tokens, ...), sent as given."""
    price: Price = Field(default_factory=Price)
    """Token prices, for the cost columns."""
    evals: list[str] = Field(min_length=1)
    """Names of the eval sets replayed against this route."""
    schedule: str | None = None
    """Cron expression in ``timezone`` (weekday 0 or 7 is Sunday); null: only on demand."""
    samples: StrictInt = Field(default=1, ge=1, le=100)
    """Replays of each item per run, for noisy routes."""
    stream: bool = False
    """Ask for a streamed response, which measures time to first token."""


class Judge(_Model):
    """An LLM that scores outputs against an eval set's criteria."""

    provider: str
    """Key of ``providers`` that serves the judge."""
    model: str = Field(min_length=1)
    """Model name sent in the request body."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Extra request fields for judge calls."""
    price: Price = Field(default_factory=Price)
    """Token prices, for the judge's own cost."""
    daily_budget_usd: float | None = Field(default=None, ge=0)
    """Judging pauses for the rest of the day once a day's spend would pass this."""
    judge_samples: StrictInt = Field(default=1, ge=1, le=20)
    """Verdicts averaged per output and criterion."""
    structured_output: bool = True
    """Ask for the verdict with ``response_format`` JSON schema; false for providers
    without it: the verdict is then asked for as JSON in text and read tolerantly."""
    logprobs: bool = False
    """Ask for ``logprobs`` and score each verdict by its probability-weighted grade
    (G-Eval style: the expected grade over the grade token's ``top_logprobs``) instead of
    the integer; a reply without usable logprobs counts its integer grade."""

    @model_validator(mode="after")
    def _logprobs_asked(self) -> Judge:
        if not self.logprobs:
            return self
        if self.params.get("logprobs", True) is not True:
            raise ValueError("`params.logprobs` must not turn off what `logprobs: true` asks for")
        top = self.params.get("top_logprobs")
        if top is not None and (type(top) is not int or not 1 <= top <= MAX_TOP_LOGPROBS):
            raise ValueError(
                f"`params.top_logprobs` must be a whole number from 1 to {MAX_TOP_LOGPROBS} "
                "with `logprobs: true` (leave it out to ask for every grade of the scale)"
            )
        return self


class Detection(_Model):
    """How a run is compared with the route's own baseline (see README, Detection)."""

    method: Literal["paired", "sigma"] = "paired"
    """What pages on quality: ``paired`` (per-item tests and CUSUM; fewer false pages,
    more drops caught, see ``bench/detection.py``) or ``sigma`` (the simple rule alone).
    The sigma rule is computed, stored and shown either way."""
    sigma: float = Field(default=2.0, gt=0)
    """The simple rule: a run scoring below ``mean - sigma * sd`` of its baseline."""
    sigma_mode: Literal["classic", "prediction"] = "classic"
    """``classic``: ``sigma`` as written (about 14 false pages a year at 2 and 14 runs);
    ``prediction``: widened by a t prediction interval to the tail ``sigma`` promises."""
    baseline_runs: StrictInt = Field(default=14, ge=2, le=365)
    """Completed runs that make up a baseline (its mean and sd for the sigma rule)."""
    min_baseline_runs: StrictInt = Field(default=5, ge=2)
    """Fewer runs than this: the route's state is ``unknown`` and nothing pages."""
    item_history_runs: StrictInt = Field(default=28, ge=2, le=365)
    """Runs that make up each item's own history for the paired tests (never fewer than
    ``baseline_runs``; the same runs are left out: guard band, incidents, suspect judge).
    A longer history estimates each item's pass rate better, so the paired tests come
    closer to knowing it; the sigma rule keeps its ``baseline_runs``."""
    guard_runs: StrictInt = Field(default=7, ge=0, le=60)
    """Most recent runs left out of the baseline, so a slow drop is not absorbed into it.
    Shrinks while history is short, down to 0 at ``min_baseline_runs`` runs."""
    min_item_history: StrictInt = Field(default=3, ge=1)
    """Items with fewer baseline results (new items) are left out of the paired tests."""
    false_alarms_per_year: float = Field(default=1.0, gt=0, le=365)
    """The false-page budget, split across detectors and metrics."""
    budget_scope: Literal["fleet", "route"] = "fleet"
    """``fleet``: the budget covers every route together, so adding routes adds no
    pages; ``route``: each (route, eval set) gets the whole budget."""
    multiplicity: Literal["bh", "bonferroni"] = "bh"
    """How a fleet budget is shared across routes: Benjamini-Hochberg or Bonferroni."""
    min_effect: float = Field(default=0.02, ge=0, le=1)
    """A quality or error finding also needs a drop at least this large (0..1 of score),
    so a significant but trivial drop on a large eval set does not page."""
    design_drop: float = Field(default=0.05, gt=0, le=0.5)
    """The drop the weighted paired test is tuned to catch (0..1 of pass rate)."""
    cusum_k: float = Field(default=0.5, gt=0, le=3)
    """CUSUM allowance in standard deviations of the per-run statistic."""
    critical_runs: StrictInt = Field(default=2, ge=1, le=30)
    """A ``critical: true`` item failing in this many runs in a row pages on its own."""
    recover_runs: StrictInt = Field(default=3, ge=1, le=60)
    """Healthy runs in a row that resolve an open incident."""
    min_relative_change: float = Field(default=0.25, ge=0)
    """Latency p95 and cost per call must rise by at least this share to page."""

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Detection:
        if self.min_baseline_runs > self.baseline_runs:
            raise ValueError(
                f"min_baseline_runs ({self.min_baseline_runs}) is larger than "
                f"baseline_runs ({self.baseline_runs})"
            )
        if self.min_item_history > max(self.baseline_runs, self.item_history_runs):
            raise ValueError(
                f"min_item_history ({self.min_item_history}) is larger than "
                f"baseline_runs ({self.baseline_runs}) and item_history_runs "
                f"({self.item_history_runs})"
            )
        return self


class SlackAlerts(_Model):
    """Slack incoming-webhook alerts."""

    webhook_url_env: str
    """Name of the environment variable holding the Slack webhook URL (a secret)."""


class WebhookAlert(_Model):
    """A generic HTTP receiver of signed event bodies."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """What events pending for this receiver are filed under; default: derived from
    ``url``. Name it before changing its URL while events may be pending."""
    url: str
    """Where events are POSTed; ``${VAR}`` expands."""
    secret_env: str | None = None
    """Name of the environment variable holding the HMAC signing secret."""

    @property
    def key(self) -> str:
        """Its stable outbox key: ``name``, else a digest of ``url`` as written."""
        return self.name or "url-" + hashlib.sha256(self.url.encode()).hexdigest()[:12]


class Delivery(_Model):
    """How the outbox retries a receiver that is down."""

    backoff_initial_s: float = Field(default=30.0, gt=0)
    """Wait before the second attempt; it doubles (with jitter) after each failure."""
    backoff_max_s: float = Field(default=1800.0, gt=0)
    """Longest wait between two attempts."""
    give_up_hours: float = Field(default=72.0, gt=0)
    """An event still undelivered this long after it was raised is marked dead."""
    run_wait_s: float = Field(default=20.0, ge=0)
    """How long ``routewatch run`` keeps delivering pending events before it exits."""
    timeout_s: float = Field(default=10.0, gt=0)
    """Time limit of one delivery attempt."""


class Alerts(_Model):
    """Where incidents and policy changes are announced."""

    slack: SlackAlerts | None = None
    """Slack alerts; omit for none."""
    webhooks: list[WebhookAlert] = Field(default_factory=list)
    """Generic signed webhooks."""
    renotify_hours: float | None = Field(default=None, gt=0)
    """Remind every this many hours while an incident stays open; omit for no reminders."""
    no_data_hours: float = Field(default=6.0, gt=0)
    """A scheduled run not completed this many hours after its slot raises ``route.no_data``
    (checked by the daemon)."""
    delivery: Delivery = Field(default_factory=Delivery)
    """Retries of undelivered events."""

    @model_validator(mode="after")
    def _webhooks_apart(self) -> Alerts:
        keys = [h.key for h in self.webhooks]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(
                f"webhooks: more than one receiver is filed as {', '.join(twice)}; "
                "give each its own `name` (or URL)"
            )
        return self

    def targets(self) -> list[str]:
        """Outbox targets of every event: ``slack`` and ``webhook:<key>``, as configured.

        Keyed by name (or URL), not position, so reordering the list while events are
        pending sends none of them to the wrong receiver.
        """
        return (["slack"] if self.slack is not None else []) + [
            f"webhook:{h.key}" for h in self.webhooks
        ]


PublisherType = Literal["json", "litellm", "litellm-api", "openrouter"]


class Publisher(_Model):
    """Where a policy's active chain is written when it changes."""

    type: PublisherType
    """``json``: the policy JSON file; ``litellm``: a LiteLLM proxy config file;
    ``litellm-api``: a LiteLLM proxy's ``POST /fallback``; ``openrouter``: a JSON file with
    the ``models`` array of an OpenRouter request."""
    path: PathText | None = None
    """File to write (``json``, ``litellm``, ``openrouter``); relative to the config file."""
    url: str | None = None
    """The LiteLLM proxy's base URL (``litellm-api``); ``${VAR}`` expands."""
    api_key_env: str | None = None
    """Name of the environment variable holding the LiteLLM admin key (``litellm-api``)."""
    group: str | None = None
    """LiteLLM model group that clients send for this policy (``litellm``: set as an alias
    of the active head; ``litellm-api``: the model whose fallbacks are set). Default: the
    policy's name for ``litellm``, the first configured route's model for ``litellm-api``."""

    @property
    def key(self) -> str:
        """Its stable outbox key: the type and a digest of where it writes, as loaded.

        At most 24 characters, so ``publish:<policy>:<key>`` fits the outbox's target column.
        """
        where = json.dumps([self.path, self.url, self.group])
        return f"{self.type}-" + hashlib.sha256(where.encode()).hexdigest()[:12]

    @model_validator(mode="after")
    def _target_matches_type(self) -> Publisher:
        if self.type in ("json", "litellm", "openrouter") and not self.path:
            raise ValueError(f"a {self.type} publisher needs `path`")
        if self.type == "litellm-api" and not self.url:
            raise ValueError("a litellm-api publisher needs `url`")
        if self.type == "litellm-api" and not self.api_key_env:
            raise ValueError("a litellm-api publisher needs `api_key_env`")
        return self


class Policy(_Model):
    """A fallback chain of routes, and whether routewatch may change it by itself."""

    chain: list[str] = Field(min_length=1)
    """Route names, most preferred first."""
    mode: Literal["auto", "suggest"] = "suggest"
    """``auto``: demote a degraded route; ``suggest``: only say what should change."""
    publish: list[Publisher] = Field(default_factory=list)
    """Where the active chain is written."""

    @model_validator(mode="after")
    def _publishers_apart(self) -> Policy:
        keys = [p.key for p in self.publish]
        if len(set(keys)) < len(keys):
            raise ValueError("publish: the same publisher is listed more than once")
        return self


class Reports(_Model):
    """The weekly HTML report."""

    dir: PathText = "reports"
    """Folder for report files; relative to the config file's folder."""
    schedule: str = "0 8 * * MON"
    """Cron expression in ``timezone`` for writing the report in the daemon."""


class Scheduler(_Model):
    """How the daemon keeps its schedules."""

    misfire_grace_s: float = Field(default=3600.0, gt=0)
    """A slot missed by less than this (the daemon was down or busy) still runs, once."""
    dispatch_every_s: float = Field(default=5.0, gt=0)
    """How often the daemon delivers pending alerts and publisher writes."""
    stop_timeout_s: float = Field(default=60.0, ge=0)
    """On SIGTERM, runs in flight get this long to finish; then they are left resumable."""


class Server(_Model):
    """The daemon's HTTP surface."""

    host: str = "127.0.0.1"
    """Address to listen on."""
    port: StrictInt = Field(default=8787, ge=1, le=65535)
    """Port to listen on."""
    token_env: str | None = None
    """Name of the environment variable holding the bearer token for every POST."""


class Config(_Model):
    """The whole of ``routewatch.yaml``."""

    database_url: PathText = "sqlite:///routewatch.db"
    """SQLAlchemy URL; ``ROUTEWATCH_DATABASE_URL`` overrides it; ``${VAR}`` expands."""
    timezone: str = "UTC"
    """IANA time zone of every cron schedule."""
    eval_dir: PathText = "evals"
    """Folder of eval sets (``*.yaml``, ``*.jsonl``); relative to the config file's folder."""
    providers: dict[str, Provider] = Field(default_factory=dict)
    """OpenAI-compatible endpoints, by name."""
    routes: dict[str, Route] = Field(default_factory=dict)
    """Routes to watch, by name."""
    judges: dict[str, Judge] = Field(default_factory=dict)
    """LLM judges, by name; eval sets choose one with ``judge:``."""
    detection: Detection = Field(default_factory=Detection)
    """Baseline and drop detection."""
    alerts: Alerts = Field(default_factory=Alerts)
    """Alert receivers."""
    policies: dict[str, Policy] = Field(default_factory=dict)
    """Fallback chains, by name."""
    reports: Reports = Field(default_factory=Reports)
    """The weekly report."""
    scheduler: Scheduler = Field(default_factory=Scheduler)
    """The daemon's schedules."""
    server: Server = Field(default_factory=Server)
    """The daemon's HTTP server."""

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this configuration was loaded from, if any."""
        return self._source


def secret(var: str, env: Mapping[str, str], *, needed_for: str = "") -> str:
    """Read a secret named by an ``*_env`` field, at the moment it is needed.

    Raises:
        MissingSecretError: the variable is unset or empty; names it, never a value.
    """
    value = env.get(var, "")
    if not value:
        raise MissingSecretError(var, needed_for=needed_for)
    return value


_RETRIED = " (retried until alerts.delivery.give_up_hours"


def unset_secrets(config: Config, env: Mapping[str, str], *, daemon: bool = True) -> list[str]:
    """What each ``*_env`` variable the config names but ``env`` lacks would break.

    A secret is read only when a request needs it, so a missing one fails that request;
    the daemon says so at start instead of at the first run, alert or POST. Never a value.
    ``daemon=False`` leaves out the daemon's own token (``validate``: most projects are
    run from the command line, where no POST is made).
    """
    used = {r.provider for r in config.routes.values()} | {
        j.provider for j in config.judges.values()
    }
    found: list[str] = []
    # The daemon reads the environment once, at start.
    retried = _RETRIED + ("; set it and restart)" if daemon else ")")

    def check(var: str | None, what: str) -> None:
        if var and not env.get(var):
            found.append(f"{var} is not set: {what}")

    for name, provider in config.providers.items():
        if name in used:
            check(provider.api_key_env, f"every call to provider {name} will fail")
    if config.alerts.slack is not None:
        check(config.alerts.slack.webhook_url_env, f"Slack alerts fail{retried}")
    for hook in config.alerts.webhooks:
        check(hook.secret_env, f"alerts to webhook {hook.key} fail{retried}")
    for name, policy in config.policies.items():
        for publisher in policy.publish:
            check(publisher.api_key_env, f"policy {name}'s {publisher.type} publisher will fail")
    if daemon:
        check(config.server.token_env, "every POST to the daemon is refused with 403")
    return found


def publisher_clashes(config: Config) -> list[str]:
    """Publishers of different policies that would undo each other's writes, in words.

    Two policies writing one JSON file replace each other's file; two editing one LiteLLM
    config whose chains share a model group each replace the other's ``fallbacks`` entry
    once both chains are headed by it (and reorder its ``model_list`` entries), and one
    ``model_group_alias`` serves one of them; two posting fallbacks for one model to one
    proxy replace each other's.
    """
    files: dict[str, list[tuple[str, Publisher]]] = {}
    apis: dict[tuple[str, str], list[str]] = {}
    for name, policy in config.policies.items():
        for p in policy.publish:
            if p.path:
                files.setdefault(os.path.realpath(p.path), []).append((name, p))
            elif p.url:
                model = p.group or config.routes[policy.chain[0]].model
                # One proxy however its URL is written (a trailing /, a query).
                apis.setdefault((_without_secrets(p.url), model), []).append(name)
    said: list[str] = []
    for path, users in files.items():
        for i, (a, pa) in enumerate(users):
            for b, pb in users[i + 1 :]:
                if pa.type != "litellm" or pb.type != "litellm":
                    who = f"policy {a}'s publishers" if a == b else f"policies {a} and {b}"
                    said.append(
                        f"{who} both write {path} ({pa.type} and {pb.type}): "
                        "each publish replaces the other's"
                    )
                    continue
                if a == b:
                    continue  # one policy's edits of one config agree
                models_a = {config.routes[r].model for r in config.policies[a].chain}
                shared = [
                    config.routes[r].model
                    for r in config.policies[b].chain
                    if config.routes[r].model in models_a
                ]
                if shared:
                    said.append(
                        f"policies {a} and {b} edit the LiteLLM config {path} and share model "
                        f"group(s) {', '.join(dict.fromkeys(shared))}: whenever both chains "
                        "are headed by one, each publish replaces the other's fallbacks entry"
                    )
                if (pa.group or a) == (pb.group or b):
                    said.append(
                        f"policies {a} and {b} edit the LiteLLM config {path} with one group "
                        f"{pa.group or a!r}: its model_group_alias follows whichever published last"
                    )
    for (url, model), names in apis.items():
        others = list(dict.fromkeys(names))
        if len(others) > 1:
            said.append(
                f"policies {', '.join(others[:-1])} and {others[-1]} set the fallbacks of "
                f"model {model!r} on the proxy {url}: each publish replaces the other's"
            )
    return said


def _without_secrets(url: str) -> str:
    """``url`` without user info, query or fragment, where a key may be written."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid url)"
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


def load_config(path: Path, env: Mapping[str, str]) -> Config:
    """Read, validate and cross-check ``routewatch.yaml``.

    Relative paths in the file resolve against the file's folder.

    Raises:
        ConfigError: every problem found, each as ``path:line: field: message``.
    """
    return load_config_located(path, env).config


class LocatedConfig(NamedTuple):
    """A loaded config with the lines of its values, for later cross-file checks."""

    config: Config
    lines: LineMap


def load_config_located(path: Path, env: Mapping[str, str]) -> LocatedConfig:
    """``load_config``, also returning where each value sits in the file."""
    draft = read_config(path, env)
    if draft.problems or draft.config is None:
        raise ConfigError(draft.problems)
    return LocatedConfig(config=draft.config, lines=draft.lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeclaredNames:
    """The names ``routewatch.yaml`` gives its providers, routes, judges and policies.

    An entry counts whether it validated or not, so that a route with a problem of its
    own is not also called unknown where a chain names it. ``None``: the section is not
    a mapping; its names are unknown and references to them are not checked.
    """

    providers: tuple[str, ...] | None = None
    routes: tuple[str, ...] | None = None
    judges: tuple[str, ...] | None = None
    policies: tuple[str, ...] | None = None

    @classmethod
    def of(cls, config: Config) -> DeclaredNames:
        """The names of a validated config's entries."""
        return cls(
            providers=tuple(config.providers),
            routes=tuple(config.routes),
            judges=tuple(config.judges),
            policies=tuple(config.policies),
        )

    @classmethod
    def written(cls, data: Mapping[str, Any]) -> DeclaredNames:
        """The names as written in the file's data, whatever their entries hold."""

        def names(section: str) -> tuple[str, ...] | None:
            value = data.get(section, {})
            return tuple(value) if isinstance(value, dict) else None

        return cls(
            providers=names("providers"),
            routes=names("routes"),
            judges=names("judges"),
            policies=names("policies"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigDraft:
    """What ``read_config`` made of ``routewatch.yaml``: its problems and what validated.

    ``load_project`` checks the eval files against a draft even while the config has
    problems, so that one ``routewatch validate`` shows them all.
    """

    problems: list[Problem]
    """Every problem of the file: its fields, cron expressions, URLs and references."""
    config: Config | None
    """Without problems, the config with its paths resolved. With problems, the entries
    and fields that validated (``_valid_parts``), ``eval_dir`` resolved and other paths
    as written. None when the file is not a YAML mapping."""
    names: DeclaredNames
    """Every name the file gives, whether its entry validated or not."""
    eval_dir: Path | None
    """The eval folder, resolved as ``Config.eval_dir`` is; None when ``eval_dir`` is not
    text, or the file cannot be read."""
    lines: LineMap
    """Where each value sits in the file."""


def read_config(path: Path, env: Mapping[str, str]) -> ConfigDraft:
    """Read ``routewatch.yaml`` and check as much of it as can be checked, raising nothing.

    Cron expressions and references are checked in the entries that validated, against
    every name the file gives; an entry with a field problem waits for its fix.
    """
    shown = display_path(path)
    missing = "file not found; create one with `routewatch init`, or point to it with -c FILE"
    try:
        located = load_yaml(read_source(path, shown, missing=missing), shown)
    except YamlSyntaxError as exc:
        return _unreadable(exc.problem, LineMap(path=shown))
    lines = located.lines
    data = located.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return _unreadable(lines.problem((), "the file must be a mapping of config keys"), lines)

    problems: list[Problem] = []
    if env.get(DATABASE_URL_ENV):
        data = {**data, "database_url": env[DATABASE_URL_ENV]}
    data = _expand_urls(data, env, lines, problems)
    base = path.resolve().parent
    eval_dir = _eval_dir(data.get("eval_dir", Config.model_fields["eval_dir"].default), base)
    config: Config | None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += _validation_problems(exc, lines)
        config = _valid_parts(data, exc)
    names = DeclaredNames.written(data)
    if config is not None:
        from_env = bool(env.get(DATABASE_URL_ENV))
        problems += check_references(config, lines, database_from_env=from_env, names=names)
        if problems:
            if eval_dir is not None:
                config = config.model_copy(update={"eval_dir": str(eval_dir)})
        else:
            try:
                config = _resolve_paths(config, base)
            except RuntimeError as exc:  # a SQLite path under ~name of an unknown user
                reason = f"cannot resolve the SQLite file's path: {exc}"
                problems.append(lines.problem(("database_url",), reason))
                return ConfigDraft(
                    problems=problems, config=None, names=names, eval_dir=eval_dir, lines=lines
                )
            config._source = path.resolve()
    return ConfigDraft(
        problems=problems, config=config, names=names, eval_dir=eval_dir, lines=lines
    )


def _unreadable(problem: Problem, lines: LineMap) -> ConfigDraft:
    return ConfigDraft(
        problems=[problem], config=None, names=DeclaredNames(), eval_dir=None, lines=lines
    )


def _eval_dir(value: Any, base: Path) -> Path | None:
    if not isinstance(value, str):
        return None  # the field's problem says why
    try:
        return Path(_resolve_path(value, base))
    except (ValueError, RuntimeError):  # a NUL character, ~name of an unknown user
        return None


_SALVAGE_ROUNDS = 3
"""Rounds of leaving out what failed. Leaving out a field can fail its section's own check
(``detection.min_baseline_runs`` against ``baseline_runs``), which the next round leaves out."""


def _valid_parts(data: dict[str, Any], exc: ValidationError) -> Config | None:
    """The config without each entry or field that failed, for the checks that follow.

    An entry of ``providers``, ``routes``, ``judges`` or ``policies`` is left out whole;
    elsewhere the field that failed is, and its default stands in. None when that still
    leaves no valid config.
    """
    for _ in range(_SALVAGE_ROUNDS):
        for err in exc.errors(include_url=False):
            data = _without(data, clean_loc(err["loc"])[:2])
        try:
            return Config.model_validate(data)
        except ValidationError as again:
            exc = again
    return None


def _without(data: dict[str, Any], loc: tuple[str | int, ...]) -> dict[str, Any]:
    """``data`` without the value at ``loc`` (one or two keys deep), or its whole section."""
    if not loc:
        return data
    section = data.get(str(loc[0]))
    if len(loc) > 1 and isinstance(section, dict) and loc[1] in section:
        return {**data, str(loc[0]): {k: v for k, v in section.items() if k != loc[1]}}
    return {k: v for k, v in data.items() if k != loc[0]}


_SECRET_FIELDS = {"api_key", "secret", "token", "webhook_url", "password"}


def _validation_problems(exc: ValidationError, lines: LineMap) -> list[Problem]:
    problems = lines.from_validation(exc, model=Config)
    for idx, err in enumerate(exc.errors(include_url=False)):
        last = err["loc"][-1] if err["loc"] else ""
        if err["type"] == "extra_forbidden" and last in _SECRET_FIELDS:
            problem = problems[idx]
            problems[idx] = Problem(
                path=problem.path,
                line=problem.line,
                field=problem.field,
                message=f"secrets may not be written in routewatch.yaml; put it in an "
                f"environment variable and name that variable in `{last}_env`",
            )
    return problems


def _expand_urls(
    data: dict[str, Any], env: Mapping[str, str], lines: LineMap, problems: list[Problem]
) -> dict[str, Any]:
    """Expand ``${VAR}`` in every URL field, recording unset variables as problems."""

    def expand(value: Any, loc: tuple[str | int, ...]) -> Any:
        if not isinstance(value, str):
            return value

        def sub(match: re.Match[str]) -> str:
            var = match.group(1)
            if not ENV_VAR_PATTERN.match(var):
                problems.append(lines.problem(loc, f"${{{var}}} is not a variable name"))
                return match.group(0)
            if var not in env:
                problems.append(lines.problem(loc, f"environment variable {var} is not set"))
                return match.group(0)
            return env[var]

        return _EXPAND.sub(sub, value)

    out = dict(data)
    out["database_url"] = expand(out.get("database_url"), ("database_url",))
    for name, provider in _items(out.get("providers")):
        if isinstance(provider, dict) and "base_url" in provider:
            loc = ("providers", name, "base_url")
            raw = provider["base_url"]
            if isinstance(raw, str) and _literal_password(raw):
                problems.append(
                    lines.problem(
                        loc,
                        "a password in base_url is a secret written in routewatch.yaml; "
                        "use api_key_env, or take the password from a variable: ${VAR}",
                    )
                )
            url = expand(raw, loc)
            out["providers"] = {**out["providers"], name: {**provider, "base_url": url}}
    if out["database_url"] is None:
        del out["database_url"]
    alerts = out.get("alerts")
    if isinstance(alerts, dict) and isinstance(alerts.get("webhooks"), list):
        hooks = [
            {**h, "url": expand(h["url"], ("alerts", "webhooks", i, "url"))}
            if isinstance(h, dict) and "url" in h
            else h
            for i, h in enumerate(alerts["webhooks"])
        ]
        out["alerts"] = {**alerts, "webhooks": hooks}
    for name, policy in _items(out.get("policies")):
        if isinstance(policy, dict) and isinstance(policy.get("publish"), list):
            pubs = [
                {**p, "url": expand(p["url"], ("policies", name, "publish", i, "url"))}
                if isinstance(p, dict) and "url" in p
                else p
                for i, p in enumerate(policy["publish"])
            ]
            out["policies"] = {**out["policies"], name: {**policy, "publish": pubs}}
    return out


def _items(value: Any) -> list[tuple[str, Any]]:
    return list(value.items()) if isinstance(value, dict) else []


def check_references(
    config: Config,
    lines: LineMap,
    *,
    database_from_env: bool = False,
    names: DeclaredNames | None = None,
) -> list[Problem]:
    """Cross-checks the schema cannot express: names, references, URLs, cron, time zone.

    Eval-set names are checked later, against the files found (``load_project``).

    Args:
        config: The config, or the parts of it that validated (``read_config``).
        lines: Where its values sit in the file.
        database_from_env: The database URL came from ``ROUTEWATCH_DATABASE_URL``, and
            its problems say so.
        names: Every name the file gives, including entries left out of ``config`` for
            problems of their own; default: ``config``'s. A reference to one of them is
            not unknown.
    """
    problems: list[Problem] = []
    declared = names if names is not None else DeclaredNames.of(config)
    tz_ok = _check_timezone(config, lines, problems)
    for kind, section, given in (
        ("provider", "providers", declared.providers),
        ("route", "routes", declared.routes),
        ("judge", "judges", declared.judges),
        ("policy", "policies", declared.policies),
    ):
        for name in given or ():
            if not NAME_PATTERN.match(name):
                problems.append(
                    lines.problem(
                        (section, name),
                        f"{kind} name {name!r} may use only letters, digits, '.', '_' and '-'",
                    )
                )
    for name, provider in config.providers.items():
        _check_http_url(provider.base_url, ("providers", name, "base_url"), lines, problems)
        if provider.api_key_env and _has_credentials(provider.base_url):
            problems.append(
                lines.problem(
                    ("providers", name, "base_url"),
                    "carries credentials (user@) while api_key_env is set: a request has "
                    "one Authorization header, so use one or the other",
                )
            )
        _check_env_name(provider.api_key_env, ("providers", name, "api_key_env"), lines, problems)
    providers = declared.providers
    for name, route in config.routes.items():
        if providers is not None and route.provider not in providers:
            problems.append(
                lines.problem(
                    ("routes", name, "provider"),
                    f"unknown provider {route.provider!r}; known: {_known(providers)}",
                )
            )
        if route.schedule is not None and tz_ok:
            _check_cron(
                route.schedule, config.timezone, ("routes", name, "schedule"), lines, problems
            )
    for kind, entries in (("routes", config.routes), ("judges", config.judges)):
        for name, entry in entries.items():
            _check_params(entry.params, (kind, name, "params"), lines, problems)
    for name, judge in config.judges.items():
        if providers is not None and judge.provider not in providers:
            problems.append(
                lines.problem(
                    ("judges", name, "provider"),
                    f"unknown provider {judge.provider!r}; known: {_known(providers)}",
                )
            )
    for name, policy in config.policies.items():
        seen: set[str] = set()
        for i, route_name in enumerate(policy.chain):
            if declared.routes is not None and route_name not in declared.routes:
                problems.append(
                    lines.problem(
                        ("policies", name, "chain", i),
                        f"unknown route {route_name!r}; known: {_known(declared.routes)}",
                    )
                )
            elif route_name in seen:
                problems.append(
                    lines.problem(("policies", name, "chain", i), f"{route_name!r} appears twice")
                )
            seen.add(route_name)
        for i, pub in enumerate(policy.publish):
            if pub.url is not None:
                _check_http_url(pub.url, ("policies", name, "publish", i, "url"), lines, problems)
            _check_env_name(
                pub.api_key_env, ("policies", name, "publish", i, "api_key_env"), lines, problems
            )
    if config.alerts.slack is not None:
        _check_env_name(
            config.alerts.slack.webhook_url_env,
            ("alerts", "slack", "webhook_url_env"),
            lines,
            problems,
        )
    for i, hook in enumerate(config.alerts.webhooks):
        _check_http_url(hook.url, ("alerts", "webhooks", i, "url"), lines, problems)
        _check_env_name(hook.secret_env, ("alerts", "webhooks", i, "secret_env"), lines, problems)
    _check_env_name(config.server.token_env, ("server", "token_env"), lines, problems)
    if tz_ok:
        _check_cron(
            config.reports.schedule, config.timezone, ("reports", "schedule"), lines, problems
        )
    from_env = " (from ROUTEWATCH_DATABASE_URL)" if database_from_env else ""
    expected = "expected e.g. sqlite:///routewatch.db or postgresql+psycopg://user@host/db"
    try:
        backend = make_url(config.database_url).get_backend_name()
    except ArgumentError:
        problems.append(
            lines.problem(("database_url",), f"not a database URL{from_env}; {expected}")
        )
    else:
        if backend not in ("sqlite", "postgresql", "postgres"):
            problems.append(
                lines.problem(
                    ("database_url",),
                    f"{backend} is not supported{from_env}: routewatch stores its results "
                    f"in SQLite or PostgreSQL; {expected}",
                )
            )
    return problems


RESERVED_PARAMS = frozenset({"model", "messages", "stream"})
"""Request fields routewatch sets itself; ``params`` may not change them behind its back."""
_SECRET_PARAM = re.compile(
    r"(^|[_-])(api_?key|secret|token|password|authorization)$", re.IGNORECASE
)
"""``api_key``, ``client_secret``, ``access_token``; not ``max_tokens``."""


def _check_params(
    params: Mapping[str, Any], loc: tuple[str | int, ...], lines: LineMap, problems: list[Problem]
) -> None:
    for key in params:
        if key in RESERVED_PARAMS:
            hint = "use the route's `stream:`" if key == "stream" else f"set `{key}:` itself"
            problems.append(lines.problem((*loc, key), f"`{key}` is set by routewatch; {hint}"))
        elif _SECRET_PARAM.search(key):
            problems.append(
                lines.problem(
                    (*loc, key),
                    "secrets may not be written in routewatch.yaml; the provider's "
                    "`api_key_env` names the variable that holds the key",
                )
            )


def _known(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "(none defined)"


def _check_timezone(config: Config, lines: LineMap, problems: list[Problem]) -> bool:
    try:
        ZoneInfo(config.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(
            lines.problem(("timezone",), f"unknown time zone {config.timezone!r}; use an IANA name")
        )
        return False
    return True


def _check_cron(
    expr: str, tz: str, loc: tuple[str | int, ...], lines: LineMap, problems: list[Problem]
) -> None:
    try:
        parse_cron(expr, tz)
    except ValueError as exc:
        problems.append(lines.problem(loc, str(exc)))


def _check_http_url(
    url: str, loc: tuple[str | int, ...], lines: LineMap, problems: list[Problem]
) -> None:
    if "${" in url:
        return  # an unset variable was already reported
    if not re.match(r"^https?://[^/\s]+", url):
        problems.append(lines.problem(loc, "must be an http:// or https:// URL"))


def _literal_password(url: str) -> bool:
    """Whether ``url`` holds a password written out, not one taken from ``${VAR}``."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return False
    return bool(password) and "${" not in (password or "")


def _has_credentials(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.username is not None


def _check_env_name(
    var: str | None, loc: tuple[str | int, ...], lines: LineMap, problems: list[Problem]
) -> None:
    if var is not None and not ENV_VAR_PATTERN.match(var):
        problems.append(
            lines.problem(
                loc,
                "must name an environment variable (letters, digits, '_'), not hold a secret",
            )
        )


def _resolve_paths(config: Config, base: Path) -> Config:
    """Make every relative path in ``config`` absolute against ``base``."""

    def resolve(p: str) -> str:
        return _resolve_path(p, base)

    url = make_url(config.database_url)
    database_url = config.database_url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database_url = url.set(database=resolve(url.database)).render_as_string(hide_password=False)
    policies = {
        name: policy.model_copy(
            update={
                "publish": [
                    p.model_copy(update={"path": resolve(p.path)}) if p.path else p
                    for p in policy.publish
                ]
            }
        )
        for name, policy in config.policies.items()
    }
    return config.model_copy(
        update={
            "database_url": database_url,
            "eval_dir": resolve(config.eval_dir),
            "reports": config.reports.model_copy(update={"dir": resolve(config.reports.dir)}),
            "policies": policies,
        }
    )


def _resolve_path(p: str, base: Path) -> str:
    return str((base / Path(p).expanduser()).resolve())
