"""Publishers against real files and a real HTTP server standing in for a LiteLLM proxy."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from routewatch.config import Publisher
from routewatch.errors import MissingSecretError
from routewatch.policy.engine import Demotion
from routewatch.policy.publishers import (
    PolicyState,
    PublishError,
    describe,
    policy_json,
    publish,
)

AT = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
CONFIGURED = ("primary", "backup", "cheap")
MODELS = {"primary": "chat-primary", "backup": "chat-backup", "cheap": "chat-cheap"}
KEY = "sk-admin-0123456789"

LITELLM_CONFIG = """\
# LiteLLM proxy config for the chat service.
# Owned by the platform team; routewatch edits the chat fallbacks.
model_list:
  - model_name: chat-primary  # what every client sends
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      rpm: 600
  - model_name: embed-small
    litellm_params:
      model: openai/text-embedding-3-small
      api_key: os.environ/OPENAI_API_KEY

  # the backups
  - model_name: chat-backup
    litellm_params:
      model: anthropic/claude-3-5-sonnet-20241022
      api_key: "os.environ/ANTHROPIC_API_KEY"
  - model_name: chat-cheap
    litellm_params:
      model: groq/llama-3.1-70b-versatile
      api_key: 'os.environ/GROQ_API_KEY'

litellm_settings:
  num_retries: 2  # per deployment, before a fallback
  request_timeout: 30
  drop_params: true

general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY

router_settings:
  routing_strategy: simple-shuffle
  fallbacks:
    - embed-small: [embed-large]
    - chat-primary: [chat-cheap]  # stale, written by hand
  model_group_alias:
    legacy: chat-primary
"""


def state(chain: tuple[str, ...] = CONFIGURED, version: int = 1) -> PolicyState:
    demoted = tuple(
        Demotion(route=r, since=AT, reason=f"open incident #7 on score ({r})", incident_id=7)
        for r in CONFIGURED
        if r not in chain
    )
    return PolicyState(
        policy="chat",
        version=version,
        updated_at=AT,
        chain=chain,
        configured_chain=CONFIGURED,
        demoted=demoted,
        models=MODELS,
    )


DEMOTED = state(("backup", "cheap"), version=2)


def litellm_file(tmp_path: Path, text: str = LITELLM_CONFIG) -> Path:
    path = tmp_path / "litellm.yaml"
    path.write_text(text)
    return path


def publish_litellm(path: Path, policy: PolicyState, group: str | None = None) -> Any:
    publish(Publisher(type="litellm", path=str(path), group=group), policy, env={})
    return yaml.safe_load(path.read_text())


def without_policy(config: dict[str, Any]) -> dict[str, Any]:
    """The config minus what the publisher owns, with model_list in a canonical order."""
    config = json.loads(json.dumps(config))
    config["model_list"].sort(key=lambda entry: entry["model_name"])
    del config["router_settings"]["fallbacks"], config["router_settings"]["model_group_alias"]
    return config


def test_policy_times_read_to_the_second() -> None:
    """A pin's time comes from the clock, microseconds and all."""
    pinned = dataclasses.replace(DEMOTED, updated_at=AT.replace(microsecond=890173))

    assert policy_json(pinned)["updated_at"] == "2026-11-23T06:00:00+00:00"


def test_policy_json_is_the_design_policy_file() -> None:
    assert policy_json(DEMOTED) == {
        "policy": "chat",
        "version": 2,
        "updated_at": "2026-11-23T06:00:00+00:00",
        "chain": ["backup", "cheap"],
        "demoted": [
            {
                "route": "primary",
                "since": "2026-11-23T06:00:00+00:00",
                "reason": "open incident #7 on score (primary)",
                "incident_id": 7,
            }
        ],
    }


@pytest.mark.parametrize(
    "change",
    [
        {"chain": ()},
        {"models": {"primary": "chat-primary"}},
        {"updated_at": AT.replace(tzinfo=None)},
    ],
    ids=["empty-chain", "missing-model", "naive-time"],
)
def test_policy_state_refuses_what_no_publisher_can_write(change: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "policy": "chat",
        "version": 1,
        "updated_at": AT,
        "chain": CONFIGURED,
        "configured_chain": CONFIGURED,
        "demoted": (),
        "models": MODELS,
    }

    with pytest.raises(ValueError, match="chat"):
        PolicyState(**(fields | change))


def test_json_publisher_writes_policy_json_creating_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "policy" / "chat.json"

    publish(Publisher(type="json", path=str(path)), DEMOTED, env={})

    assert path.read_text().endswith("}\n")
    assert json.loads(path.read_text()) == policy_json(DEMOTED)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_json_publisher_replaces_the_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    publisher = Publisher(type="json", path=str(path))

    publish(publisher, DEMOTED, env={})
    publish(publisher, state(version=3), env={})

    assert json.loads(path.read_text())["version"] == 3
    assert os.listdir(tmp_path) == ["chat.json"]


def test_json_publisher_under_a_file_raises_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "policy").write_text("a file, not a folder")
    path = tmp_path / "policy" / "chat.json"

    with pytest.raises(PublishError, match=re.escape(str(path))):
        publish(Publisher(type="json", path=str(path)), DEMOTED, env={})


def test_failed_replace_removes_the_temp_file(tmp_path: Path) -> None:
    (tmp_path / "chat.json").mkdir()

    with pytest.raises(PublishError, match="cannot write"):
        publish(Publisher(type="json", path=str(tmp_path / "chat.json")), DEMOTED, env={})
    assert os.listdir(tmp_path) == ["chat.json"]


def test_openrouter_publisher_writes_the_active_models_in_order(tmp_path: Path) -> None:
    path = tmp_path / "openrouter.json"

    publish(Publisher(type="openrouter", path=str(path)), DEMOTED, env={})

    assert json.loads(path.read_text()) == {"models": ["chat-backup", "chat-cheap"]}


def test_litellm_keeps_comments_and_every_other_setting(tmp_path: Path) -> None:
    path = litellm_file(tmp_path)

    written = publish_litellm(path, DEMOTED)

    text = path.read_text()
    comments = [line[line.index("#") :] for line in LITELLM_CONFIG.splitlines() if "#" in line]
    assert [c for c in comments if c not in text] == ["# stale, written by hand"]
    assert "'os.environ/GROQ_API_KEY'" in text
    assert without_policy(written) == without_policy(yaml.safe_load(LITELLM_CONFIG))


def test_litellm_replaces_this_policys_fallbacks_only(tmp_path: Path) -> None:
    written = publish_litellm(litellm_file(tmp_path), DEMOTED)

    assert written["router_settings"]["fallbacks"] == [
        {"embed-small": ["embed-large"]},
        {"chat-backup": ["chat-cheap"]},
    ]


@pytest.mark.parametrize(
    ("group", "added"),
    [(None, {"chat": "chat-backup"}), ("gpt-default", {"gpt-default": "chat-backup"})],
)
def test_litellm_aliases_the_group_to_the_active_head(
    tmp_path: Path, group: str | None, added: dict[str, str]
) -> None:
    written = publish_litellm(litellm_file(tmp_path), DEMOTED, group=group)

    assert written["router_settings"]["model_group_alias"] == {"legacy": "chat-primary"} | added


def test_litellm_sets_no_alias_from_the_head_to_itself(tmp_path: Path) -> None:
    path = litellm_file(tmp_path)
    publish_litellm(path, DEMOTED, group="chat-primary")

    written = publish_litellm(path, state(version=3), group="chat-primary")

    assert written["router_settings"]["model_group_alias"] == {"legacy": "chat-primary"}


def test_litellm_reorders_the_chains_slots_in_model_list(tmp_path: Path) -> None:
    written = publish_litellm(litellm_file(tmp_path), DEMOTED)

    names = [entry["model_name"] for entry in written["model_list"]]
    assert names == ["chat-backup", "embed-small", "chat-cheap", "chat-primary"]


def test_litellm_restored_chain_gives_the_configured_file_back(tmp_path: Path) -> None:
    path = litellm_file(tmp_path)
    publish_litellm(path, DEMOTED)

    written = publish_litellm(path, state(version=3))

    assert written["router_settings"]["fallbacks"][-1] == {
        "chat-primary": ["chat-backup", "chat-cheap"]
    }
    head = LITELLM_CONFIG.split("router_settings:")[0]
    assert path.read_text().split("router_settings:")[0] == head


def test_litellm_keeps_a_hand_written_entry_of_another_chain_model(tmp_path: Path) -> None:
    """Its entry is marked: another chain model's own fallbacks, written by hand, stay.

    Only a file from before the marker loses them, once: then every chain model's entry
    was taken as the policy's.
    """
    path = litellm_file(tmp_path)
    publish_litellm(path, state(version=1))
    text = path.read_text().replace(
        "  model_group_alias:", "    - chat-cheap: [chat-backup]  # by hand\n  model_group_alias:"
    )
    path.write_text(text)

    demoted = publish_litellm(path, DEMOTED)["router_settings"]["fallbacks"]
    restored = publish_litellm(path, state(version=3))["router_settings"]["fallbacks"]

    assert demoted == [
        {"embed-small": ["embed-large"]},
        {"chat-cheap": ["chat-backup"]},
        {"chat-backup": ["chat-cheap"]},
    ]
    assert restored == [
        {"embed-small": ["embed-large"]},
        {"chat-cheap": ["chat-backup"]},
        {"chat-primary": ["chat-backup", "chat-cheap"]},
    ]
    assert "- chat-cheap: [chat-backup]  # by hand\n" in path.read_text()


def test_litellm_indentation_is_told_by_a_mapping_not_a_long_scalar(tmp_path: Path) -> None:
    text = "description:\n    the chat proxy\ngeneral_settings:\n  master_key: x\n"
    path = litellm_file(tmp_path, text)

    publish_litellm(path, DEMOTED)

    # (ruamel joins the scalar's lines: a round trip keeps no line breaks of plain text)
    assert "\ngeneral_settings:\n  master_key: x\nrouter_settings:\n  fallbacks:\n" in (
        path.read_text()
    )


def test_litellm_keeps_a_comment_below_its_own_entry(tmp_path: Path) -> None:
    path = litellm_file(
        tmp_path,
        "router_settings:\n  fallbacks:\n    - z: [y]\n\n  # aliases below, keep me\n"
        "  model_group_alias:\n    x: y\n",
    )

    for policy in (state(version=1), DEMOTED, state(version=3)):
        publish_litellm(path, policy)

    text = path.read_text()
    assert "  # routewatch: policy chat\n\n  # aliases below, keep me\n  model_group_alias:" in text


def test_two_policies_in_one_litellm_file_keep_each_others_entries(tmp_path: Path) -> None:
    path = litellm_file(tmp_path, "model_list: []\n")
    other = dataclasses.replace(
        state(version=1),
        policy="chat-premium",
        chain=("p1", "p2"),
        configured_chain=("p1", "p2"),
        models={"p1": "premium-1", "p2": "premium-2"},
    )

    publish_litellm(path, other)
    publish_litellm(path, state(version=1))
    written = publish_litellm(path, DEMOTED)

    assert written["router_settings"]["fallbacks"] == [
        {"premium-1": ["premium-2"]},
        {"chat-backup": ["chat-cheap"]},
    ]


def test_litellm_keeps_the_other_models_of_an_entry_that_maps_several(tmp_path: Path) -> None:
    text = LITELLM_CONFIG.replace(
        "    - embed-small: [embed-large]\n"
        "    - chat-primary: [chat-cheap]  # stale, written by hand\n",
        "    - chat-primary: [chat-cheap]\n      embed-large: [embed-small]\n",
    )

    written = publish_litellm(litellm_file(tmp_path, text), DEMOTED)

    assert written["router_settings"]["fallbacks"] == [
        {"embed-large": ["embed-small"]},
        {"chat-backup": ["chat-cheap"]},
    ]


def test_litellm_writes_a_crlf_file_with_a_byte_order_mark_back_as_it_came(
    tmp_path: Path,
) -> None:
    path = tmp_path / "litellm.yaml"
    original = ("\ufeff" + LITELLM_CONFIG.replace("\n", "\r\n")).encode()
    path.write_bytes(original)
    publish_litellm(path, DEMOTED)
    demoted = path.read_bytes()

    publish_litellm(path, state(version=3))

    assert demoted.startswith(b"\xef\xbb\xbf")
    assert demoted.count(b"\r\n") == demoted.count(b"\n")
    head = original.split(b"router_settings:")[0]
    assert path.read_bytes().split(b"router_settings:")[0] == head


FOUR_SPACES = """\
model_list:
  - model_name: chat-primary
    litellm_params:
        model: openai/gpt-4o
        api_key: os.environ/OPENAI_API_KEY
  - model_name: chat-backup
    litellm_params:
        model: anthropic/claude-3-5-sonnet-20241022
  - model_name: chat-cheap
    litellm_params:
        model: groq/llama-3.1-70b-versatile
general_settings:
    master_key: os.environ/LITELLM_MASTER_KEY
router_settings:
    routing_strategy: simple-shuffle
    fallbacks:
      - chat-primary: [chat-backup, chat-cheap]
    model_group_alias:
        chat: chat-primary
"""


def test_litellm_keeps_a_files_own_indentation(tmp_path: Path) -> None:
    path = litellm_file(tmp_path, FOUR_SPACES)
    publish_litellm(path, DEMOTED)
    demoted = path.read_text()

    publish_litellm(path, state(version=3))

    assert "general_settings:\n    master_key: os.environ/LITELLM_MASTER_KEY\n" in demoted
    assert (
        "    fallbacks:\n      - chat-backup: [chat-cheap]  # routewatch: policy chat\n" in demoted
    )
    assert path.read_text() == FOUR_SPACES.replace(
        "[chat-backup, chat-cheap]\n", "[chat-backup, chat-cheap]  # routewatch: policy chat\n"
    )


def test_litellm_keeps_the_comment_above_the_next_section_in_place(tmp_path: Path) -> None:
    """ruamel keeps such lines with the last value above them, where new keys would follow."""
    path = litellm_file(
        tmp_path,
        "router_settings:\n  fallbacks:\n    - chat-primary: [chat-cheap]\n\n"
        "# who may call the proxy\ngeneral_settings:\n  master_key: x\n",
    )

    publish_litellm(path, DEMOTED)

    assert path.read_text() == (
        "router_settings:\n  fallbacks:\n"
        "    - chat-backup: [chat-cheap]  # routewatch: policy chat\n"
        "  model_group_alias:\n    chat: chat-backup\n\n"
        "# who may call the proxy\ngeneral_settings:\n  master_key: x\n"
    )


def test_litellm_publishing_twice_changes_nothing_more(tmp_path: Path) -> None:
    path = litellm_file(tmp_path)
    publish_litellm(path, DEMOTED)
    once = path.read_text()

    publish_litellm(path, DEMOTED)

    assert path.read_text() == once


def test_litellm_creates_router_settings_and_keeps_permissions(tmp_path: Path) -> None:
    path = litellm_file(tmp_path, "model_list: []\n")
    path.chmod(0o640)

    written = publish_litellm(path, DEMOTED)

    assert written["router_settings"] == {
        "fallbacks": [{"chat-backup": ["chat-cheap"]}],
        "model_group_alias": {"chat": "chat-backup"},
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "does not exist"),
        ("- model_name: chat-primary\n", "not a mapping"),
        ("", "the file is empty; a litellm publisher edits an existing LiteLLM proxy config"),
        ("model_list: [\n", "not valid YAML"),
        ("router_settings: [fallbacks]\n", "`router_settings` in the LiteLLM config"),
    ],
    ids=["missing", "list", "empty", "bad-yaml", "bad-router-settings"],
)
def test_litellm_refuses_a_file_that_is_not_a_proxy_config(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "litellm.yaml"
    if text is not None:
        path.write_text(text)

    with pytest.raises(PublishError, match=message) as caught:
        publish(Publisher(type="litellm", path=str(path)), DEMOTED, env={})
    assert str(caught.value).count(str(path)) == 1, "named once, by the publisher's label"
    assert path.exists() is (text is not None)
    assert text is None or path.read_text() == text


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("general_settings:\n\tmaster_key: sk-prod-9f8e7d6c5b4a\n", "line 2, column 1: found"),
        (
            "general_settings:\n  master_key: sk-live-1111\n  master_key: sk-prod-9f8e7d6c5b4a\n",
            "line 3, column 3: found a duplicate key (while constructing a mapping)",
        ),
        ("general_settings: {master_key: 'sk-prod-9f8e7d6c5b4a\n", "line 2, column 1:"),
        (
            "general_settings:\n  creds: |\n    sk-prod-9f8e7d6c5b4a\n    sk-live-2\n  creds: x\n",
            "line 5, column 3: found a duplicate key",
        ),
        ("keys:\n  sk-prod-9f8e7d6c5b4a: a\n  sk-prod-9f8e7d6c5b4a: b\n", "line 3, column 3:"),
    ],
    ids=["tab", "duplicate-key", "unterminated", "multi-line-value", "secret-key"],
)
def test_an_invalid_litellm_config_is_located_without_quoting_its_secrets(
    tmp_path: Path, text: str, where: str
) -> None:
    """ruamel quotes the offending line and a duplicate key's values: a master key there
    would reach the log, the database and every alert of the failed publish."""
    path = litellm_file(tmp_path, text)

    with pytest.raises(PublishError) as caught:
        publish(Publisher(type="litellm", path=str(path)), DEMOTED, env={})

    message = str(caught.value)
    assert f"the file is not valid YAML: {where}" in message
    assert "sk-prod" not in message
    assert "sk-live" not in message


@dataclass
class Proxy:
    """A local HTTP server recording each request and answering ``status`` and ``body``."""

    url: str
    status: int = 200
    body: bytes = b'{"message": "ok"}'
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            record.requests.append((self.path, dict(self.headers), json.loads(raw)))
            self.send_response(record.status)
            self.send_header("Content-Length", str(len(record.body)))
            self.end_headers()
            self.wfile.write(record.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record = Proxy(url=f"http://127.0.0.1:{server.server_address[1]}/")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield record
    server.shutdown()
    server.server_close()
    thread.join()


def api(url: str) -> Publisher:
    return Publisher(type="litellm-api", url=url, api_key_env="LITELLM_ADMIN_KEY")


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_litellm_api_posts_the_fallbacks_with_the_admin_key(proxy: Proxy) -> None:
    publish(api(proxy.url), DEMOTED, env={"LITELLM_ADMIN_KEY": KEY})

    [(path, headers, body)] = proxy.requests
    assert path == "/fallback"
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body == {
        "model": "chat-primary",
        "fallback_models": ["chat-backup", "chat-cheap"],
        "fallback_type": "general",
    }


def test_litellm_api_keeps_the_urls_query_and_sends_the_key_despite_user_info(
    proxy: Proxy,
) -> None:
    url = proxy.url.replace("http://", "http://ops:pw@") + "admin%2Fv1/?team=chat"

    publish(api(url), DEMOTED, env={"LITELLM_ADMIN_KEY": KEY})

    [(path, headers, _)] = proxy.requests
    assert path == "/admin%2Fv1/fallback?team=chat"
    assert headers["Authorization"] == f"Bearer {KEY}"


def test_litellm_api_error_status_raises_without_the_key(proxy: Proxy) -> None:
    proxy.status, proxy.body = 500, f"invalid key {KEY}".encode()

    with pytest.raises(PublishError, match="500") as caught:
        publish(api(proxy.url), DEMOTED, env={"LITELLM_ADMIN_KEY": KEY})
    assert KEY not in str(caught.value)


def test_litellm_api_missing_key_names_only_the_variable() -> None:
    with pytest.raises(PublishError, match="LITELLM_ADMIN_KEY") as caught:
        publish(api(closed_port_url()), DEMOTED, env={"OTHER": KEY})
    assert isinstance(caught.value.__cause__, MissingSecretError)
    assert KEY not in str(caught.value)


def test_litellm_api_unreachable_proxy_raises_publish_error() -> None:
    with pytest.raises(PublishError, match="request failed") as caught:
        publish(api(closed_port_url()), DEMOTED, env={"LITELLM_ADMIN_KEY": KEY})
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("publisher", "label"),
    [
        (Publisher(type="json", path="/srv/policy/chat.json"), "json /srv/policy/chat.json"),
        (api("http://admin:hunter2@proxy:4000/?key=hunter2"), "litellm-api http://proxy:4000"),
    ],
)
def test_describe_names_the_target_and_never_a_secret(publisher: Publisher, label: str) -> None:
    assert describe(publisher) == label
