"""`routewatch validate` on a scaffolded project broken in the ways people break files."""

from pathlib import Path

import pytest

from routewatch.cli import run
from routewatch.scaffold import write_project

CONFIG = "routewatch.yaml"
CHAIN_MODELS = [
    ("chat-flash", "deepseek-ai/DeepSeek-V4-Flash"),
    ("chat-pro", "qwen/Qwen3-Pro"),
    ("chat-premium", "openai/gpt-4o"),
]
"""The routes of ``init``'s policy chain and their models."""
EVALS = "evals/support-faq.yaml"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_project(tmp_path)
    return tmp_path


def edit(path: Path, old: str, new: str) -> int:
    """Replace ``old`` once in ``path``; return the 1-based line where ``new`` starts."""
    text = path.read_text()
    assert text.count(old) >= 1, old
    index = text.index(old)
    path.write_text(text[:index] + new + text[index + len(old) :])
    return text[:index].count("\n") + 1


def test_scaffolded_project_validates(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["validate", "-c", str(project / CONFIG)])

    assert code == 0, capsys.readouterr().err
    assert "eval set support-faq version" in capsys.readouterr().out


# (file, old text, new text, field, message fragment, line offset from the edit)
BREAKAGES = {
    # PyYAML notices the unclosed '[' at the next key, two lines on; the message names both.
    "bad-yaml": (
        CONFIG,
        "timezone: UTC",
        "timezone: [UTC",
        "(file)",
        "while parsing a flow sequence that began at line {line})",
        2,
    ),
    "unknown-route-in-chain": (
        CONFIG,
        "chain: [chat-flash, chat-pro,",
        "chain: [chat-flash, chat-typo,",
        "policies.chat.chain[1]",
        "unknown route 'chat-typo'",
        0,
    ),
    "duplicate-item-id": (
        EVALS,
        "id: reset-password",
        "id: refund-window",
        "items[1].id",
        "duplicate item id 'refund-window'",
        0,
    ),
    "bad-regex": (
        EVALS,
        '- regex: "\\\\b30\\\\b"',
        '- regex: "(30"',
        "items[0].checks[2]",
        "regex does not compile",
        0,
    ),
    "bad-cron": (
        CONFIG,
        'schedule: "0 6 * * *"',
        'schedule: "0 25 * * *"',
        "routes.chat-flash.schedule",
        "cron '0 25 * * *': hour field '25': 25 is above its maximum, 23",
        0,
    ),
    "negative-price": (
        CONFIG,
        "price: {input_per_mtok: 0.27,",
        "price: {input_per_mtok: -0.27,",
        "routes.chat-flash.price.input_per_mtok",
        "greater than or equal to 0",
        0,
    ),
    "unknown-check": (
        EVALS,
        '- contains: "30 days"',
        '- contain: "30 days"',
        "items[0].checks[0]",
        "unknown check kind 'contain'",
        0,
    ),
    "wrong-type": (
        CONFIG,
        "samples: 1 ",
        "samples: three ",
        "routes.chat-flash.samples",
        "valid integer",
        0,
    ),
    "misspelt-key": (
        CONFIG,
        "max_concurrency: 16 ",
        "max_concurency: 16 ",
        "providers.sim.max_concurency",
        "unknown field; did you mean `max_concurrency`?",
        0,
    ),
    "misspelt-item-key": (
        EVALS,
        "    weight: 1\n",
        "    wieght: 1\n",
        "items[0].wieght",
        "unknown field; did you mean `weight`?",
        0,
    ),
    "unknown-key": (
        CONFIG,
        "max_concurrency: 16 ",
        "parallelism: 16 ",
        "providers.sim.parallelism",
        "unknown field (check its spelling, or see `routewatch init` for every key)",
        0,
    ),
    "unknown-eval-set": (
        CONFIG,
        'evals: [support-faq]\n    schedule: "0 6',
        'evals: [support-faq, nope]\n    schedule: "0 6',
        "routes.chat-flash.evals[1]",
        "unknown eval set 'nope'",
        0,
    ),
}


@pytest.mark.parametrize("case", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_each_breakage_is_reported_at_its_line(
    project: Path, capsys: pytest.CaptureFixture[str], case: tuple[str, str, str, str, str, int]
) -> None:
    file, old, new, field, fragment, offset = case
    line = edit(project / file, old, new)

    code = run(["validate", "-c", str(project / CONFIG)])

    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    shown = [ln for ln in err.splitlines() if f": {field}: " in ln]
    assert len(shown) == 1, err
    path_part, line_part = shown[0].split(f": {field}: ")[0].rsplit(":", 1)
    assert path_part.endswith(file)
    assert int(line_part) == line + offset
    assert fragment.format(line=line) in shown[0]


def test_empty_items_is_reported(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project / EVALS
    text = path.read_text()
    path.write_text(text[: text.index("items:")] + "items: []\n")

    code = run(["validate", "-c", str(project / CONFIG)])

    err = capsys.readouterr().err
    assert code == 1
    line = path.read_text().splitlines().index("items: []") + 1
    assert f"support-faq.yaml:{line}: items: needs at least 1 entry; found none" in err


def test_missing_config_file_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["validate", "-c", str(tmp_path / "nope.yaml")])

    err = capsys.readouterr().err
    assert code == 1
    assert "nope.yaml: (file): file not found; create one with `routewatch init`" in err


def test_missing_eval_dir_is_reported(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(project / CONFIG, "eval_dir: evals", "eval_dir: elsewhere")

    code = run(["validate", "-c", str(project / CONFIG)])

    assert code == 1
    assert "elsewhere: (file): eval folder not found" in capsys.readouterr().err


def test_an_eval_dir_that_is_a_file_is_named_so(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(project / CONFIG, "eval_dir: evals", f"eval_dir: {CONFIG}")

    assert run(["validate", "-c", str(project / CONFIG)]) == 1

    assert f"{CONFIG}: (file): is a file, not the eval folder" in capsys.readouterr().err


def test_problems_in_several_places_are_all_reported(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(project / CONFIG, "samples: 1 ", "samples: 0 ")
    edit(project / CONFIG, "max_concurrency: 16", "max_concurrency: -1")
    edit(project / CONFIG, "sigma: 2.0", "sigma: 0")

    code = run(["validate", "-c", str(project / CONFIG)])

    err = capsys.readouterr().err
    assert code == 1
    assert "3 problems found" in err
    for field in ("routes.chat-flash.samples", "providers.sim.max_concurrency", "detection.sigma"):
        assert f": {field}: " in err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_config_and_eval_file_problems_are_reported_together(
    project: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    config_line = edit(project / CONFIG, "samples: 1 ", "samples: three ")
    eval_line = edit(project / EVALS, '- regex: "\\\\b30\\\\b"', '- regex: "(30"')

    code = run([command, "-c", str(project / CONFIG)])

    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert f"{CONFIG}:{config_line}: routes.chat-flash.samples: " in err[0]
    assert f"{EVALS}:{eval_line}: items[0].checks[2]: regex does not compile" in err[1]
    assert err[2:] == ["2 problems found"]


def test_problems_come_config_first_then_each_eval_file_by_path(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file's problems read from its top, whichever check found them."""
    edit(project / CONFIG, "port: 8787", "port: high")
    edit(project / CONFIG, "provider: sim", "provider: simm")
    (project / "evals" / "a-first.yaml").write_text("items: []\n")
    edit(project / EVALS, "id: reset-password", "id: refund-window")

    assert run(["validate", "-c", str(project / CONFIG)]) == 1

    shown = capsys.readouterr().err.splitlines()[:-1]
    assert [line.split(": ")[1] for line in shown] == [
        "routes.chat-flash.provider",
        "server.port",
        "items",
        "items[1].id",
    ]


def test_eval_references_are_checked_while_the_config_has_problems(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(project / CONFIG, "sigma: 2.0", "sigma: 0")
    edit(
        project / CONFIG,
        'evals: [support-faq]\n    schedule: "0 6',
        'evals: [support-faq, nope]\n    schedule: "0 6',
    )

    assert run(["validate", "-c", str(project / CONFIG)]) == 1

    err = capsys.readouterr().err
    assert ": detection.sigma: " in err
    assert ": routes.chat-flash.evals[1]: unknown eval set 'nope'" in err
    assert "2 problems found" in err


def test_an_eval_set_or_judge_with_problems_is_not_also_called_unknown(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Routes name the set that fails to load; the set that loads names the failing judge."""
    text = (project / EVALS).read_text()
    (project / "evals" / "other.yaml").write_text(text.replace("name: support-faq", "name: other"))
    edit(project / EVALS, "id: reset-password", "id: refund-window")
    edit(project / CONFIG, "judge_samples: 1 ", "judge_samples: 0 ")

    assert run(["validate", "-c", str(project / CONFIG)]) == 1

    err = capsys.readouterr().err
    assert ": judges.default.judge_samples: " in err
    assert ": items[1].id: duplicate item id 'refund-window'" in err
    assert "2 problems found" in err


def test_eval_files_are_read_from_the_configured_eval_dir_despite_other_problems(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eval_dir`` resolves against the config's folder, as when the config is valid."""
    (project / "evals").rename(project / "questions")
    edit(project / CONFIG, "eval_dir: evals", "eval_dir: questions")
    edit(project / CONFIG, "samples: 1 ", "samples: three ")
    edit(project / "questions" / "support-faq.yaml", "id: reset-password", "id: refund-window")

    assert run(["validate", "-c", str(project / CONFIG)]) == 1

    err = capsys.readouterr().err
    assert ": routes.chat-flash.samples: " in err
    assert "questions/support-faq.yaml:" in err
    assert "2 problems found" in err


def test_an_eval_dir_that_is_not_text_is_reported_alone(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The eval files wait for a usable ``eval_dir``; no default is guessed."""
    edit(project / CONFIG, "eval_dir: evals", "eval_dir: [evals]")
    edit(project / EVALS, "id: reset-password", "id: refund-window")

    assert run(["validate", "-c", str(project / CONFIG)]) == 1

    err = capsys.readouterr().err.splitlines()
    assert ": eval_dir: " in err[0]
    assert err[1:] == ["1 problem found"]


def test_validate_warns_of_unset_secrets_and_a_missing_litellm_file(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both fail only at the first call or policy change; validate is where to learn it."""
    config = project / CONFIG
    monkeypatch.delenv("RW_TEST_GATEWAY_KEY", raising=False)
    assert run(["validate", "-c", str(config)]) == 0
    assert capsys.readouterr().err == "", "a fresh project warns of nothing"
    edit(config, "# api_key_env: GATEWAY_API_KEY", "api_key_env: RW_TEST_GATEWAY_KEY")
    edit(
        config,
        "# - {type: litellm, path: gateway/litellm-config.yaml, group: chat}",
        "- {type: litellm, path: gateway/litellm-config.yaml, group: chat}",
    )

    assert run(["validate", "-c", str(config)]) == 0

    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: RW_TEST_GATEWAY_KEY is not set: every call to provider sim will fail",
        f"warning: policy chat: the litellm publisher's file "
        f"{project / 'gateway/litellm-config.yaml'} does not exist; it edits an existing "
        "LiteLLM proxy config, so every publish will fail until it does",
    ]
    monkeypatch.setenv("RW_TEST_GATEWAY_KEY", "set")
    (project / "gateway").mkdir()
    litellm = project / "gateway/litellm-config.yaml"
    litellm.write_text("model_list: []\n")
    assert run(["validate", "-c", str(config)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: policy chat: litellm publisher {litellm}: `model_list` defines no model "
        f"group {model!r} (route {route}); the fallbacks would name it all the same"
        for route, model in CHAIN_MODELS
    ]
    entries = "".join(f"  - model_name: {model}\n" for _, model in CHAIN_MODELS)
    litellm.write_text(f"model_list:\n{entries}")
    assert run(["validate", "-c", str(config)]) == 0
    assert capsys.readouterr().err == ""
    litellm.write_text(f"model_list:\n{entries}general_settings:\n\tmaster_key: sk-9f8e7d\n")
    assert run(["validate", "-c", str(config)]) == 0
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning.endswith(
        "the file is not valid YAML: line 6, column 1: found character '\\t' that cannot "
        "start any token (while scanning for the next token)"
    )
    assert "sk-9f8e7d" not in warning
    litellm.write_text(
        f"model_list:\n{entries}general_settings:\n  master_key: !secret sk-9f8e7d\n"
    )
    assert run(["validate", "-c", str(config)]) == 0, "a tag a publish accepts"
    assert capsys.readouterr().err == ""


def test_validate_warns_of_policies_whose_publishers_undo_each_other(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each publish of one would silently replace what the other wrote."""
    monkeypatch.setenv("RW_TEST_LITELLM_KEY", "set")
    config = project / CONFIG
    (project / "gateway").mkdir()
    entries = "".join(f"  - model_name: {model}\n" for _, model in CHAIN_MODELS)
    (project / "gateway/litellm-config.yaml").write_text(f"model_list:\n{entries}")
    proxy = "http://admin:pw-7f3a@127.0.0.1:4000/?key=q-9e2b"
    edit(
        config,
        "# - {type: litellm, path: gateway/litellm-config.yaml, group: chat}",
        "- {type: litellm, path: gateway/litellm-config.yaml, group: chat}\n"
        f'      - {{type: litellm-api, url: "{proxy}", api_key_env: RW_TEST_LITELLM_KEY}}',
    )
    edit(
        config,
        "      # - {type: openrouter, path: policy/chat-openrouter.json}\n",
        "  premium:\n"
        "    chain: [chat-pro, chat-premium]\n"
        "    publish:\n"
        "      - {type: openrouter, path: policy/chat.json}\n"
        "      - {type: litellm, path: gateway/litellm-config.yaml, group: chat}\n"
        # The same proxy, written without its query and with a trailing slash.
        '      - {type: litellm-api, url: "http://127.0.0.1:4000/", api_key_env: '
        "RW_TEST_LITELLM_KEY, group: deepseek-ai/DeepSeek-V4-Flash}\n"
        "  other:\n"
        "    chain: [chat-flash]\n"
        "    publish:\n"
        "      - {type: json, path: policy/other.json}\n"
        "      - {type: openrouter, path: policy/other.json}\n",
    )

    assert run(["validate", "-c", str(config)]) == 0

    litellm = project / "gateway/litellm-config.yaml"
    assert capsys.readouterr().err.splitlines() == [
        f"warning: policies chat and premium both write {project / 'policy/chat.json'} "
        "(json and openrouter): each publish replaces the other's",
        f"warning: policies chat and premium edit the LiteLLM config {litellm} and share "
        "model group(s) qwen/Qwen3-Pro, openai/gpt-4o: whenever both chains are headed by "
        "one, each publish replaces the other's fallbacks entry",
        f"warning: policies chat and premium edit the LiteLLM config {litellm} with one "
        "group 'chat': its model_group_alias follows whichever published last",
        f"warning: policy other's publishers both write {project / 'policy/other.json'} "
        "(json and openrouter): each publish replaces the other's",
        "warning: policies chat and premium set the fallbacks of model "
        "'deepseek-ai/DeepSeek-V4-Flash' on the proxy http://127.0.0.1:4000: each publish "
        "replaces the other's",
    ]
