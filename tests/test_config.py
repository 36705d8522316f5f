from pathlib import Path

import pytest

from routewatch.config import Config, load_config, secret, unset_secrets
from routewatch.errors import ConfigError, MissingSecretError
from routewatch.scaffold import CONFIG_TEMPLATE, template_text

MINIMAL = """\
providers:
  gw: {base_url: "${GW_URL}/v1", api_key_env: GW_KEY}
routes:
  r1: {provider: gw, model: m, evals: [e]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routewatch.yaml"
    path.write_text(text)
    return path


def test_database_url_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "database_url: sqlite:///file.db\n")

    config = load_config(path, {"ROUTEWATCH_DATABASE_URL": "postgresql+psycopg://u@h/db"})

    assert config.database_url == "postgresql+psycopg://u@h/db"


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    path = write(sub, "database_url: sqlite:///data/rw.db\nreports: {dir: out}\n")

    config = load_config(path, {})

    assert config.database_url == f"sqlite:///{sub}/data/rw.db"
    assert config.eval_dir == str(sub / "evals")
    assert config.reports.dir == str(sub / "out")


def test_variables_expand_in_urls(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {"GW_URL": "http://127.0.0.1:9"})

    assert config.providers["gw"].base_url == "http://127.0.0.1:9/v1"


def test_unset_url_variable_is_a_located_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL), {})

    assert [str(p).split(": ", 1)[1] for p in info.value.problems] == [
        "providers.gw.base_url: environment variable GW_URL is not set"
    ]
    assert info.value.problems[0].line == 2


def test_a_database_other_than_sqlite_or_postgresql_is_refused_at_load(tmp_path: Path) -> None:
    """``validate`` says so, rather than ``status`` failing later."""
    path = write(tmp_path, "database_url: mysql://user@host/db\n")

    with pytest.raises(ConfigError) as raised:
        load_config(path, {})

    assert str(raised.value.problems[0]).startswith(
        f"{path}:1: database_url: mysql is not supported: routewatch stores its results"
    )


def test_a_bad_database_url_from_the_environment_says_where_it_came_from(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "database_url: sqlite:///file.db\n")

    with pytest.raises(ConfigError) as raised:
        load_config(path, {"ROUTEWATCH_DATABASE_URL": "garbage"})

    assert "not a database URL (from ROUTEWATCH_DATABASE_URL)" in str(raised.value.problems[0])


def test_api_key_is_not_needed_at_load_time(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {"GW_URL": "http://x"})

    assert config.providers["gw"].api_key_env == "GW_KEY"


def test_missing_secret_names_the_variable_when_needed() -> None:
    with pytest.raises(MissingSecretError, match="GW_KEY is not set") as info:
        secret("GW_KEY", {}, needed_for="provider gw")

    assert info.value.var == "GW_KEY"


def test_secret_written_in_the_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = MINIMAL.replace("api_key_env: GW_KEY", "api_key: sk-live-1234")

    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), {"GW_URL": "http://x"})

    message = str(info.value)
    assert "name that variable in `api_key_env`" in message
    assert "sk-live-1234" not in message


def test_env_field_holding_a_value_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("api_key_env: GW_KEY", 'api_key_env: "sk-live 1234"')

    with pytest.raises(ConfigError, match="must name an environment variable"):
        load_config(write(tmp_path, text), {"GW_URL": "http://x"})


def test_unknown_provider_lists_the_known_ones(tmp_path: Path) -> None:
    text = MINIMAL.replace("provider: gw", "provider: gateway")

    with pytest.raises(ConfigError, match="unknown provider 'gateway'; known: gw"):
        load_config(write(tmp_path, text), {"GW_URL": "http://x"})


def test_a_field_problem_does_not_hide_cron_or_reference_problems_elsewhere(
    tmp_path: Path,
) -> None:
    text = MINIMAL.replace("provider: gw", "provider: gateway")
    text += 'detection: {sigma: 0}\nreports: {schedule: "0 25 * * *"}\n'

    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), {"GW_URL": "http://x"})

    assert [p.field for p in raised.value.problems] == [
        "detection.sigma",
        "routes.r1.provider",
        "reports.schedule",
    ]
    assert "unknown provider 'gateway'; known: gw" in str(raised.value)


def test_an_entry_with_a_field_problem_is_not_also_called_unknown(tmp_path: Path) -> None:
    """Its name still counts where a route or a chain names it."""
    text = MINIMAL.replace("api_key_env: GW_KEY", "max_retries: -1")
    text = text.replace("evals: [e]", "evals: [e], samples: 0")
    text += "policies:\n  p: {chain: [r1]}\n"

    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), {"GW_URL": "http://x"})

    assert [p.field for p in raised.value.problems] == [
        "providers.gw.max_retries",
        "routes.r1.samples",
    ]


def test_a_default_standing_in_for_a_bad_field_adds_no_problem(tmp_path: Path) -> None:
    """min_baseline_runs' default (5) would be larger than baseline_runs (3)."""
    text = MINIMAL.replace("provider: gw", "provider: gateway")
    text += "detection: {baseline_runs: 3, min_baseline_runs: two}\n"

    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), {"GW_URL": "http://x"})

    assert [p.field for p in raised.value.problems] == [
        "detection.min_baseline_runs",
        "routes.r1.provider",
    ]


def test_min_baseline_runs_above_baseline_runs_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "detection: {baseline_runs: 4, min_baseline_runs: 5}\n")

    with pytest.raises(ConfigError, match=r"detection: min_baseline_runs \(5\) is larger"):
        load_config(path, {})


def test_unknown_timezone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        load_config(write(tmp_path, "timezone: Mars/Olympus\n"), {})


def test_empty_file_loads_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), {})

    assert config.detection.sigma == 2.0
    assert config.source == tmp_path / "routewatch.yaml"


def _keys(model: type[Config] | type, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in getattr(model, "model_fields", {}).items():
        keys.add(name)
        annotation = field.annotation
        for arg in (annotation, *getattr(annotation, "__args__", ())):
            if hasattr(arg, "model_fields"):
                keys |= _keys(arg)
    return keys


def test_init_template_names_every_config_key_and_loads(tmp_path: Path) -> None:
    text = template_text(CONFIG_TEMPLATE)

    missing = {key for key in _keys(Config) if f"{key}:" not in text}

    assert not missing
    assert load_config(write(tmp_path, text), {}).routes


def test_params_may_not_override_the_model_or_hold_a_secret(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "evals: [e]}", "evals: [e], params: {model: other, api_key: sk-1, temperature: 0}}"
    )

    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), {"GW_URL": "http://x"})

    fields = {p.field: p.message for p in info.value.problems}
    assert set(fields) == {"routes.r1.params.model", "routes.r1.params.api_key"}
    assert "sk-1" not in str(info.value)


def _gateway(url: str, *, key: bool = False) -> str:
    api_key = ", api_key_env: GW_KEY" if key else ""
    return (
        f'providers:\n  gw: {{base_url: "{url}"{api_key}}}\n'
        "routes:\n  r1: {provider: gw, model: m, evals: [e]}\n"
    )


def test_a_password_written_in_base_url_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, _gateway("http://user:hunter2@127.0.0.1:9/v1"))

    with pytest.raises(ConfigError) as raised:
        load_config(path, {})

    (problem,) = raised.value.problems
    assert "a password in base_url is a secret written in routewatch.yaml" in str(problem)
    assert problem.line == 2
    assert "hunter2" not in str(problem)


def test_a_password_from_a_variable_in_base_url_loads(tmp_path: Path) -> None:
    path = write(tmp_path, _gateway("http://user:${GW_PASS}@127.0.0.1:9/v1"))

    config = load_config(path, {"GW_PASS": "hunter2"})

    assert config.providers["gw"].base_url == "http://user:hunter2@127.0.0.1:9/v1"


def test_credentials_in_base_url_and_an_api_key_are_refused_together(tmp_path: Path) -> None:
    """Both would be an Authorization header; the HTTP client refused the pair mid-run."""
    path = write(tmp_path, _gateway("http://user:${GW_PASS}@127.0.0.1:9/v1", key=True))

    with pytest.raises(ConfigError) as raised:
        load_config(path, {"GW_PASS": "hunter2"})

    (problem,) = raised.value.problems
    assert "carries credentials (user@) while api_key_env is set" in str(problem)
    assert "hunter2" not in str(problem)


@pytest.mark.parametrize("value", [".inf", "1e400"])
def test_an_infinite_timeout_is_refused(tmp_path: Path, value: str) -> None:
    """A hanging provider would stall the run forever."""
    path = write(
        tmp_path, _gateway("http://127.0.0.1:9/v1").replace("}", f", timeout_s: {value}}}", 1)
    )

    with pytest.raises(ConfigError) as raised:
        load_config(path, {})

    assert "providers.gw.timeout_s: Input should be a finite number" in str(
        raised.value.problems[0]
    )


def test_a_huge_bad_value_is_not_echoed_whole(tmp_path: Path) -> None:
    path = write(tmp_path, f"timezone: {'X' * 5_000_000}\n")

    with pytest.raises(ConfigError) as raised:
        load_config(path, {})

    shown = str(raised.value.problems[0])
    assert shown.startswith(f"{path}:1: timezone: unknown time zone 'XXX")
    assert len(shown) < 1200
    assert shown.endswith("more characters)")


@pytest.mark.parametrize("value", ["true", "'16'", "16.0"])
def test_a_count_must_be_written_as_a_whole_number(tmp_path: Path, value: str) -> None:
    """`max_concurrency: true` was read as 1."""
    url = "http://127.0.0.1:9/v1"
    path = write(tmp_path, _gateway(url).replace("}", f", max_concurrency: {value}}}", 1))

    with pytest.raises(ConfigError) as raised:
        load_config(path, {})

    assert "providers.gw.max_concurrency: Input should be a valid integer" in str(
        raised.value.problems[0]
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('eval_dir: "a\\0b"\n', "eval_dir"),
        ('database_url: "sqlite:///a\\0b.db"\n', "database_url"),
        ('reports: {dir: "r\\0"}\n', "reports.dir"),
        (
            "routes: {r1: {provider: gw, model: m}}\n"
            "providers: {gw: {base_url: 'http://127.0.0.1:9/v1'}}\n"
            'policies: {p: {chain: [r1], publish: [{type: json, path: "p\\0.json"}]}}\n',
            "policies.p.publish[0].path",
        ),
    ],
)
def test_a_nul_character_in_a_path_is_a_located_problem(
    tmp_path: Path, text: str, field: str
) -> None:
    """It crashed resolving the path, with a traceback."""
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), {})

    assert f"{field}: must not contain a NUL character" in str(raised.value)


def test_unset_secrets_names_each_missing_variable_and_what_it_breaks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
providers:
  used: {base_url: "http://127.0.0.1:9/v1", api_key_env: USED_KEY}
  spare: {base_url: "http://127.0.0.1:9/v1", api_key_env: SPARE_KEY}
routes:
  r1: {provider: used, model: m, evals: [e]}
alerts:
  slack: {webhook_url_env: SLACK_URL}
  webhooks: [{url: "http://127.0.0.1:9/hook", secret_env: HOOK_SECRET, name: ops}]
server: {token_env: API_TOKEN}
""",
    )
    config = load_config(path, {})

    found = unset_secrets(config, {"SLACK_URL": "https://hooks.example/x", "HOOK_SECRET": ""})

    assert found == [
        "USED_KEY is not set: every call to provider used will fail",
        "HOOK_SECRET is not set: alerts to webhook ops fail"
        " (retried until alerts.delivery.give_up_hours; set it and restart)",
        "API_TOKEN is not set: every POST to the daemon is refused with 403",
    ], "a provider no route or judge uses is not worth a warning; set ones are not named"
    everything = {"USED_KEY": "k", "HOOK_SECRET": "s", "API_TOKEN": "t", "SLACK_URL": "u"}
    assert unset_secrets(config, everything) == []


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('eval_dir: "~no-such-user-rw/evals"\n', "eval_dir: cannot expand '~no-such-user-rw'"),
        ('reports: {dir: "~no-such-user-rw"}\n', "reports.dir: cannot expand '~no-such-user-rw'"),
        (
            'database_url: "sqlite:///~no-such-user-rw/rw.db"\n',
            "database_url: cannot resolve the SQLite file's path",
        ),
    ],
)
def test_a_home_folder_of_an_unknown_user_is_a_located_problem(
    tmp_path: Path, text: str, shown: str
) -> None:
    """`Path.expanduser` raises RuntimeError there: a traceback from validate."""
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), {})

    assert shown in str(raised.value)
