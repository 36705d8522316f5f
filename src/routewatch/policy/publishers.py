"""Publishers: write a policy's active chain to where gateways and clients read it.

The shell end of the policy flow: the pure engine decides a chain, then ``publish`` writes
it as the policy JSON file, into an existing LiteLLM proxy config, to a LiteLLM proxy's
``POST /fallback``, or as the ``models`` array of an OpenRouter request. Files are replaced
atomically, so a reader sees the old file or the new one; every failure is a ``PublishError``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.tokens import CommentToken
from ruamel.yaml.util import load_yaml_guess_indent

from routewatch.config import Publisher, secret
from routewatch.errors import MissingSecretError, OutputError, RoutewatchError
from routewatch.files import write_atomic
from routewatch.policy.engine import Demotion

"""Mode of a file written for the first time: gateways often run as another user."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyState:
    """What a publisher writes: a policy's active chain and the routes' model names.

    ``chain`` is never empty; ``models`` maps every route of ``chain`` and
    ``configured_chain`` to the model name its gateway knows it by (for a LiteLLM proxy,
    the model group). Datetimes are timezone-aware.
    """

    policy: str
    version: int
    updated_at: datetime
    chain: tuple[str, ...]
    configured_chain: tuple[str, ...]
    demoted: tuple[Demotion, ...]
    models: Mapping[str, str]

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError(f"policy {self.policy!r}: the active chain is empty")
        unknown = [r for r in (*self.chain, *self.configured_chain) if r not in self.models]
        if unknown:
            raise ValueError(f"policy {self.policy!r}: no model name for route(s) {unknown}")
        if any(t.tzinfo is None for t in (self.updated_at, *(d.since for d in self.demoted))):
            raise ValueError(f"policy {self.policy!r}: datetimes must be timezone-aware")


class PublishError(RoutewatchError):
    """A publisher could not write a policy; names the publisher, never a secret."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"could not publish to {target}: {reason}")


def policy_json(state: PolicyState) -> dict[str, Any]:
    """The policy file of DESIGN.md, also served by ``GET /policy/NAME``."""
    return {
        "policy": state.policy,
        "version": state.version,
        "updated_at": _iso(state.updated_at),
        "chain": list(state.chain),
        "demoted": [
            {
                "route": d.route,
                "since": _iso(d.since),
                "reason": d.reason,
                "incident_id": d.incident_id,
            }
            for d in state.demoted
        ],
    }


def describe(publisher: Publisher) -> str:
    """A short label for logs and alerts, e.g. ``json /srv/policy/chat.json``.

    A URL is shown without its user info and query, where a secret could hide.
    """
    if publisher.type != "litellm-api":
        return f"{publisher.type} {publisher.path}"
    try:
        url = httpx.URL(publisher.url or "")
    except httpx.InvalidURL:
        return "litellm-api (invalid url)"
    return f"litellm-api {url.scheme}://{url.netloc.decode('ascii')}{url.path.rstrip('/')}"


def publish(
    publisher: Publisher,
    state: PolicyState,
    *,
    env: Mapping[str, str],
    timeout_s: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Write ``state`` through one publisher.

    Args:
        publisher: where and how to write.
        state: the policy's chain to write.
        env: the environment, for the ``litellm-api`` admin key.
        timeout_s: time limit of an HTTP request.
        transport: an httpx transport to use instead of the network.

    Raises:
        PublishError: the write failed; nothing was changed, or the whole change was.
    """
    target = describe(publisher)
    if publisher.type == "litellm-api":
        _post_fallbacks(publisher, state, env, target, timeout_s, transport)
        return
    if not publisher.path:
        raise PublishError(target, f"a {publisher.type} publisher needs `path`")
    path = Path(os.path.realpath(publisher.path))  # write through a symlink, keeping it
    try:
        if publisher.type == "litellm":
            text, _ = _edit_litellm_config(path, publisher, state, target)
        elif publisher.type == "openrouter":
            text = json.dumps({"models": _active_models(state)}, indent=2) + "\n"
        else:
            text = json.dumps(policy_json(state), indent=2) + "\n"
        write_atomic(path, text)
    except OutputError as exc:
        raise PublishError(target, str(exc)) from None
    except OSError as exc:
        reason = f"cannot write the file{_via(path, publisher)}: {exc.strerror or exc}"
        raise PublishError(target, reason) from exc


def litellm_target_problems(publisher: Publisher, state: PolicyState) -> list[str]:
    """What would make publishing ``state`` into an existing LiteLLM config fail or dangle.

    The file is edited as a publish would, without writing it: what cannot be edited is
    said as the publish would say it, and model groups of the chain that ``model_list``
    does not define are named (the fallbacks and alias would point at nothing, unless the
    proxy keeps its models in its database). Nothing for a file that does not exist.
    """
    if publisher.type != "litellm" or not publisher.path:
        return []
    path = Path(os.path.realpath(publisher.path))
    target = describe(publisher)
    try:
        _, data = _edit_litellm_config(path, publisher, state, target)
    except PublishError as exc:
        return [exc.reason]
    entries = data.get("model_list") or []
    defined = {str(e.get("model_name")) for e in entries if isinstance(e, Mapping)}
    return [
        f"`model_list` defines no model group {state.models[route]!r} (route {route}); "
        "the fallbacks would name it all the same"
        for route in dict.fromkeys(state.configured_chain)
        if state.models[route] not in defined
    ]


def _iso(moment: datetime) -> str:
    """UTC to the second, as every policy file's times read (a pin's clock has microseconds)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _active_models(state: PolicyState) -> list[str]:
    """The active chain's model names in order; two routes on one model count once."""
    return list(dict.fromkeys(state.models[r] for r in state.chain))


def _via(path: Path, publisher: Publisher) -> str:
    """`` (PATH)`` when ``path`` is not the one the publisher's label shows (a symlink)."""
    return "" if str(path) == publisher.path else f" ({path})"


def _edit_litellm_config(
    path: Path, publisher: Publisher, state: PolicyState, target: str
) -> tuple[str, CommentedMap]:
    """The LiteLLM proxy config at ``path`` with this policy's chain written into it.

    Round-trip YAML keeps comments, quoting, key order and every other setting.
    """
    try:
        raw = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        hint = "a litellm publisher edits an existing LiteLLM proxy config: point `path` at it"
        raise PublishError(
            target, f"the file does not exist{_via(path, publisher)}; {hint}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise PublishError(
            target, f"cannot read the file{_via(path, publisher)}: {reason}"
        ) from exc
    # Written back as it came: with a byte-order mark, and CRLF line ends, if it had them.
    bom = "\ufeff" if raw.startswith("\ufeff") else ""
    crlf = raw.count("\r\n") * 2 > raw.count("\n")  # most lines end so
    text = re.sub(r"\r\n?", "\n", raw.removeprefix(bom))
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the user's long lines
    try:
        with warnings.catch_warnings():
            # ruamel warns of some constructs by quoting the file's lines: keys, here.
            warnings.simplefilter("ignore")
            data, indent, offset = load_yaml_guess_indent(text, yaml=yaml)
    except YAMLError as exc:
        raise PublishError(target, _yaml_problem(exc, path, publisher)) from None
    if data is None:
        hint = "a litellm publisher edits an existing LiteLLM proxy config: point `path` at it"
        raise PublishError(target, f"the file is empty{_via(path, publisher)}; {hint}")
    if not isinstance(data, CommentedMap):
        raise PublishError(target, "the file is not a mapping of LiteLLM proxy settings")
    offset = offset or 0
    yaml.indent(mapping=_mapping_indent(data), sequence=max(indent or 2, offset + 2), offset=offset)
    yaml.explicit_start = text.lstrip().startswith("---")

    with _gap_kept(data):
        _write_chain(data, publisher, state, target)

    out = io.StringIO()
    yaml.dump(data, out)
    written = out.getvalue()
    return bom + (written.replace("\n", "\r\n") if crlf else written), data


def _mapping_indent(data: CommentedMap) -> int:
    """How far the file indents a mapping under its key (ruamel guesses sequences only).

    The first top-level block mapping tells, by the column of its first key; 2 when
    the file has none.
    """
    for value in data.values():
        if isinstance(value, CommentedMap) and value and not value.fa.flow_style():
            return int(value.lc.col or 2)
    return 2


def _yaml_problem(exc: YAMLError, path: Path, publisher: Publisher) -> str:
    """Why the file is not valid YAML, and where: never a copy of its text.

    ruamel's message quotes the offending line, and a duplicate key's values: in a proxy
    config that may be a master key, which would then reach logs, the database and alerts.
    """
    where = _via(path, publisher)
    if not isinstance(exc, MarkedYAMLError) or exc.problem_mark is None:
        return f"the file is not valid YAML{where}"
    mark = exc.problem_mark
    if isinstance(exc, DuplicateKeyError):
        # Its message quotes the key and both values: keys and passwords, in this file.
        problem = "found a duplicate key"
    else:
        problem = (exc.problem or "invalid syntax").split(' with value "')[0]
    context = f" ({exc.context})" if exc.context else ""
    return (
        f"the file is not valid YAML{where}: line {mark.line + 1}, column {mark.column + 1}: "
        f"{problem}{context}"
    )


def _write_chain(data: CommentedMap, publisher: Publisher, state: PolicyState, target: str) -> None:
    """Set this policy's fallbacks, group alias and model order in a LiteLLM config."""
    models = _active_models(state)
    order = list(dict.fromkeys([*models, *(state.models[r] for r in state.configured_chain)]))
    router = _section(data, "router_settings", CommentedMap, target)
    with _gap_kept(router):
        fallbacks = _section(router, "fallbacks", CommentedSeq, target)
        backups = CommentedSeq(models[1:])
        backups.fa.set_flow_style()
        ours = CommentedMap([(models[0], backups)])
        marker = f"routewatch: policy {state.policy}"
        ours.yaml_add_eol_comment(marker, models[0])
        # Before the first marked entry (a file written by an older routewatch), every
        # entry of a chain model was taken as this policy's.
        legacy = not any(_marked(entry, marker) for entry in fallbacks)
        with _gap_kept(fallbacks):
            for i in reversed(range(len(fallbacks))):
                entry = fallbacks[i]
                if not isinstance(entry, MutableMapping):
                    continue
                # Ours: the entry this policy wrote, and any of the head it writes now.
                # Another chain model's own entry, written by hand, is the user's.
                chains = [
                    key
                    for key in entry
                    if key == models[0]
                    or _marked(entry, marker, key)
                    # another policy's marked entry is that policy's
                    or (legacy and key in order and not _marked(entry, None, key))
                ]
                if len(chains) < len(entry):
                    # One entry mapping several models: only the chain's keys are ours.
                    for key in chains:
                        del entry[key]
                    continue
                if chains:
                    gap = _take_gap(entry)
                    del fallbacks[i]
                    _put_gap(fallbacks[i - 1] if i else ours, gap)
            fallbacks.append(ours)
        aliases = _section(router, "model_group_alias", CommentedMap, target)
        with _gap_kept(aliases):
            if (group := publisher.group or state.policy) != models[0]:
                aliases[group] = models[0]
            else:  # clients sending the head's own name need no alias
                aliases.pop(group, None)
    model_list = data.get("model_list")
    if isinstance(model_list, CommentedSeq):
        _reorder_model_list(model_list, order)
    elif model_list is not None:
        raise PublishError(target, "`model_list` is not a list")


_MARKER = re.compile(r"routewatch: policy (\S+)")


def _marked(entry: Any, marker: str | None, key: Any = None) -> bool:
    """Whether ``entry`` (or its ``key``) of the fallbacks carries ``marker``.

    ``marker`` None: any policy's marker. Text the user added after it is allowed.
    """
    if not isinstance(entry, CommentedMap):
        return False
    for name in entry if key is None else [key]:
        slots: list[Any] = entry.ca.items.get(name) or []
        token = slots[2] if len(slots) > 2 else None
        if token is None:
            continue
        first = str(token.value).split("\n", 1)[0].lstrip("#").strip()
        found = _MARKER.match(first)
        if found and (marker is None or found.group(0) == marker):
            return True
    return False


def _section(parent: CommentedMap, key: str, kind: type[Any], target: str) -> Any:
    """``parent[key]``, created empty when absent or null; refused when of another kind."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = kind()
    if not isinstance(value, kind):
        wanted = "list" if kind is CommentedSeq else "mapping"
        raise PublishError(target, f"`{key}` in the LiteLLM config is not a {wanted}")
    return value


def _reorder_model_list(model_list: CommentedSeq, order: list[str]) -> None:
    """Put the chain's entries in ``order`` within the slots they occupy; others stay put.

    Comments and blank lines between entries stay where they were, not with the entry
    that happens to end above them.
    """
    rank = {model: i for i, model in enumerate(order)}
    names = [e.get("model_name") if isinstance(e, Mapping) else None for e in model_list]
    slots = [i for i, name in enumerate(names) if isinstance(name, str) and name in rank]
    before = [model_list[i] for i in slots]
    after = sorted(before, key=lambda entry: rank[entry["model_name"]])
    if all(a is b for a, b in zip(before, after, strict=True)):
        return
    gaps = [_take_gap(entry) for entry in before]
    for i, entry, gap in zip(slots, after, gaps, strict=True):
        model_list[i] = entry
        _put_gap(entry, gap)


@contextlib.contextmanager
def _gap_kept(node: Any) -> Iterator[None]:
    """Keep the comments and blank lines after ``node`` after it while its end changes."""
    gap = _take_gap(node)
    yield
    _put_gap(node, gap)


def _tail(node: Any) -> tuple[list[Any], tuple[Any, Any, int] | None]:
    """Block collections ending with ``node``, and where the comment after it is kept."""
    path: list[Any] = []
    while isinstance(node, CommentedMap | CommentedSeq) and len(node) > 0:
        path.append(node)
        key = next(reversed(node)) if isinstance(node, CommentedMap) else len(node) - 1
        child = node[key]
        if not (isinstance(child, CommentedMap | CommentedSeq) and child) or child.fa.flow_style():
            return path, (node, key, 2 if isinstance(node, CommentedMap) else 0)
        node = child
    return path, None


def _take_gap(node: Any) -> str:
    """Detach the lines after ``node``'s last line (its end-of-line comment stays)."""
    path, where = _tail(node)
    gap = ""
    token = where[0].ca.items.get(where[1], [None] * 4)[where[2]] if where else None
    if where and token is not None:
        own, newline, gap = str(token.value).partition("\n")
        where[0].ca.items[where[1]][where[2]] = token if own else None
        token.value = own + newline
    for container in reversed(path):  # after a flow collection, ruamel keeps them here
        for end in container.ca.end:
            indent = " " * end.start_mark.column if end.value.startswith("#") else ""
            gap += indent + end.value
        container.ca.end.clear()
    return gap


def _put_gap(node: Any, gap: str) -> None:
    _, where = _tail(node)
    if not gap or where is None:
        return
    container, key, slot = where
    slots = container.ca.items.setdefault(key, [None] * 4)
    if slots[slot] is None:
        slots[slot] = CommentToken("\n" + gap, CommentMark(0), None)
    else:
        # An end-of-line comment without its line end (one just added) gets one first.
        end = "" if slots[slot].value.endswith("\n") else "\n"
        slots[slot].value += end + gap


def _post_fallbacks(
    publisher: Publisher,
    state: PolicyState,
    env: Mapping[str, str],
    target: str,
    timeout_s: float,
    transport: httpx.BaseTransport | None,
) -> None:
    """Set the fallbacks of one model group through a LiteLLM proxy's admin API."""
    if not publisher.url or not publisher.api_key_env:
        raise PublishError(target, "a litellm-api publisher needs `url` and `api_key_env`")
    try:
        key = secret(publisher.api_key_env, env, needed_for="the LiteLLM proxy's admin API")
    except MissingSecretError as exc:
        raise PublishError(target, str(exc)) from exc
    group = publisher.group or state.models[state.configured_chain[0]]
    backups = [m for m in _active_models(state) if m != group]
    body = {"model": group, "fallback_models": backups, "fallback_type": "general"}
    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            base = httpx.URL(publisher.url)
            # Appended to the path, so a query stays a query; user info is dropped, or
            # httpx would send it as Basic auth in place of the admin key.
            # The raw path: an escaped `/` (%2F) in it stays escaped.
            path, _, query = base.raw_path.decode("ascii").partition("?")
            raw = path.rstrip("/") + "/fallback" + (f"?{query}" if query else "")
            url = base.copy_with(raw_path=raw.encode("ascii"), username=None, password=None)
            response = client.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        # Not chained: the httpx exception holds the request, and its headers hold the key.
        reason = f"request failed: {type(exc).__name__}: {exc}"
        raise PublishError(target, reason.replace(key, "[redacted]")) from None
    if not response.is_success:
        snippet = " ".join(response.text[:200].split())
        reason = f"HTTP {response.status_code} from POST /fallback: {snippet}"
        raise PublishError(target, reason.replace(key, "[redacted]"))
