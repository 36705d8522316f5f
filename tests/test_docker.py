"""docker/: the image, the compose file and the container's config agree with the CLI.

No container engine is needed: the compose file is checked with ``docker compose config``
(or Debian's ``docker-compose``), the Dockerfile is read line by line, and the container's
config goes through ``routewatch validate``. The image itself is not built here.
Without a compose tool the compose checks are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
import pytest
import yaml

from routewatch.cli import cli, run
from routewatch.config import Config, load_config
from routewatch.scaffold import EVAL_TEMPLATE, template_text

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
CONTAINER_CONFIG = DOCKER / "routewatch.yaml"

# Secrets the container reads; compose must pass them through by name, never hold them.
SECRET_VARS = ("ROUTEWATCH_API_TOKEN", "SLACK_WEBHOOK_URL", "GATEWAY_API_KEY",
               "ROUTEWATCH_WEBHOOK_SECRET")  # fmt: skip
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|KEY|WEBHOOK_URL")
INTERPOLATION = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?::?[-?]).*)?\}$")
PG_PASSWORD = "pg-password-sentinel-4f1c"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def _skip_or_fail(reason: str) -> NoReturn:
    if _in_ci():
        pytest.fail(f"{reason} (CI must check docker/compose.yaml)", pytrace=False)
    pytest.skip(reason)


# --- the Dockerfile --------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_stages(text: str) -> list[list[Instruction]]:
    """The Dockerfile's instructions, one list per stage (continuations joined)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments (and parser directives) also sit inside continuations
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a line continuation"
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"an instruction before the first FROM: {line}"
        stages[-1].append(instruction)
    return stages


def healthcheck_command(args: str) -> list[str] | str:
    """The command of ``HEALTHCHECK [--option=value]... CMD ...``: exec (list) or shell."""
    match = re.fullmatch(r"(?:--\S+\s+)*CMD\s+(.+)", args, flags=re.S)
    assert match, f"HEALTHCHECK without CMD: {args}"
    command = match.group(1).strip()
    if command.startswith("["):
        parsed = json.loads(command)
        assert isinstance(parsed, list)
        return [str(word) for word in parsed]
    return command


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return dockerfile_stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages: list[list[Instruction]]) -> dict[str, list[str]]:
    """The final stage's instructions by keyword (the last one of each counts)."""
    by_keyword: dict[str, list[str]] = {}
    for instruction in stages[-1]:
        by_keyword.setdefault(instruction.keyword, []).append(instruction.args)
    return by_keyword


def _exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list), f"not exec (JSON) form: {args}"
    return [str(word) for word in parsed]


def test_the_image_is_multi_stage_on_slim_python(stages: list[list[Instruction]]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0].args.split()[0]
        assert image == "python:3.11-slim", stage[0]
    final_copies = [i.args for i in stages[-1] if i.keyword == "COPY"]
    assert any(args.startswith("--from=") for args in final_copies)
    build_runs = " ".join(i.args for stage in stages[:-1] for i in stage if i.keyword == "RUN")
    assert "[postgres]" in build_runs, "the image must include the postgres extra"


def test_the_final_stage_runs_routewatch_serve_as_a_non_root_user(
    final: dict[str, list[str]],
) -> None:
    user = final["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    assert final["WORKDIR"][-1] == "/app"
    assert "8787" in final["EXPOSE"][-1].split()
    assert "/data" in " ".join(final["VOLUME"])
    env = " ".join(final["ENV"])
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert _exec_form(final["ENTRYPOINT"][-1]) == ["routewatch"]
    assert _exec_form(final["CMD"][-1]) == [
        "serve", "-c", "/config/routewatch.yaml", "--host", "0.0.0.0",
    ]  # fmt: skip


def test_the_healthcheck_gets_healthz_with_python(final: dict[str, list[str]]) -> None:
    command = healthcheck_command(final["HEALTHCHECK"][-1])
    text = command if isinstance(command, str) else " ".join(command)

    assert "http://127.0.0.1:8787/healthz" in text
    assert "urllib" in text
    assert "curl" not in text  # not in slim images
    assert "wget" not in text


def test_dockerignore_keeps_what_the_wheel_is_built_from() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for excluded in (".venv", ".git", "tests/artifacts", "*.db", "routewatch-demo", "reports"):
        assert excluded in patterns
    assert any("__pycache__" in p for p in patterns)
    # pyproject.toml names README.md as the readme and packs alembic/ into the wheel.
    for needed in ("pyproject.toml", "README.md", "src/routewatch/cli/__init__.py", "alembic"):
        matched = [p for p in patterns if fnmatch.fnmatch(needed, p.removeprefix("**/"))]
        assert not matched, f"{needed} is excluded by {matched}"


# --- routewatch invocations in the image and compose file ------------------------------


def routewatch_argvs(shell: str) -> Iterator[list[str]]:
    """The arguments of each `routewatch ...` run by a shell command line."""
    for segment in re.split(r"&&|\|\||;|\||\$\(", shell):
        try:
            words = shlex.split(segment)
        except ValueError:
            continue
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]  # VAR=value before the command
        if words and posixpath.basename(words[0]) == "routewatch":
            yield words[1:]


def image_invocations(stages: list[list[Instruction]]) -> list[list[str]]:
    """Every routewatch argv in the Dockerfile: ENTRYPOINT + CMD, RUN and HEALTHCHECK."""
    final = stages[-1]
    entrypoint = [_exec_form(i.args) for i in final if i.keyword == "ENTRYPOINT"][-1]
    cmd = [_exec_form(i.args) for i in final if i.keyword == "CMD"][-1]
    argvs = [entrypoint[1:] + cmd] if posixpath.basename(entrypoint[0]) == "routewatch" else []
    for stage in stages:
        for i in stage:
            if i.keyword == "RUN":
                argvs += routewatch_argvs(i.args)
            elif i.keyword == "HEALTHCHECK":
                command = healthcheck_command(i.args)
                if isinstance(command, list):
                    command = shlex.join(command)
                argvs += routewatch_argvs(command)
    return argvs


def compose_invocations(compose: Mapping[str, Any], image_entrypoint: list[str]) -> list[list[str]]:
    """The routewatch argvs the compose file adds (command/entrypoint/healthcheck)."""
    argvs: list[list[str]] = []
    for service in compose["services"].values():
        if "build" not in service:
            continue  # other images' commands are theirs
        entrypoint = service.get("entrypoint", image_entrypoint)
        if isinstance(entrypoint, str):
            entrypoint = shlex.split(entrypoint)
        if "command" in service:
            command = service["command"]
            words = shlex.split(command) if isinstance(command, str) else list(command)
            argvs += routewatch_argvs(shlex.join([*entrypoint, *words]))
        test = service.get("healthcheck", {}).get("test")
        if isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
            test = test[1] if test[0] == "CMD-SHELL" else shlex.join(test[1:])
        if isinstance(test, str):
            argvs += routewatch_argvs(test)
    return argvs


def _takes_value(param: click.Parameter) -> bool:
    return isinstance(param, click.Option) and not param.is_flag and not param.count


def _option(command: click.Command, word: str) -> click.Parameter | None:
    name = word.split("=", 1)[0]
    for param in command.params:
        if name in (*param.opts, *param.secondary_opts):
            return param
    if name in ("-h", "--help"):
        return click.Option(["--help"], is_flag=True)
    return None


def resolve(argv: list[str]) -> tuple[click.Command, list[str]]:
    """Walk ``argv`` down the CLI; return the leaf command and the options given to it.

    Fails if a subcommand does not exist or a group is given an unknown option.
    """
    command: click.Command = cli
    words = list(argv)
    while isinstance(command, click.Group) and words:
        word = words.pop(0)
        if word.startswith("-"):
            param = _option(command, word)
            assert param is not None, f"routewatch {shlex.join(argv)}: unknown option {word}"
            if _takes_value(param) and "=" not in word:
                words.pop(0)
            continue
        sub = command.get_command(click.Context(command), word)
        assert sub is not None, f"routewatch {shlex.join(argv)}: no command {word!r}"
        command = sub
    return command, [word for word in words if word.startswith("-")]


def not_built(command: click.Command) -> bool:
    """Whether ``command --help`` says "(not built yet)" (a group's own text, not its list)."""
    return "(not built yet)" in (command.help or "")


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def invocations(stages: list[list[Instruction]], raw_compose: dict[str, Any]) -> list[list[str]]:
    entrypoint = [_exec_form(i.args) for i in stages[-1] if i.keyword == "ENTRYPOINT"][-1]
    argvs = image_invocations(stages) + compose_invocations(raw_compose, entrypoint)
    assert ["serve", "-c", "/config/routewatch.yaml", "--host", "0.0.0.0"] in argvs
    return argvs


def test_every_routewatch_command_in_docker_files_exists(invocations: list[list[str]]) -> None:
    for argv in invocations:
        resolve(argv)  # asserts each subcommand exists
    assert "serve" in cli.list_commands(click.Context(cli))


def test_the_options_the_image_passes_exist_on_their_commands(
    invocations: list[list[str]],
) -> None:
    pending: list[str] = []
    for argv in invocations:
        command, options = resolve(argv)
        if not_built(command):
            # `serve` is being written; it will take -c/--config, --host and --port.
            pending.append(shlex.join(["routewatch", *argv]))
            continue
        for word in options:
            assert _option(command, word) is not None, (
                f"routewatch {shlex.join(argv)}: {command.name} has no option {word}"
            )
    if pending:
        pytest.skip(f"not built yet, options unchecked: {'; '.join(pending)}")


# --- the container's config ------------------------------------------------------------


@pytest.mark.parametrize(
    "database_url",
    [None, f"postgresql+psycopg://routewatch:{PG_PASSWORD}@db:5432/routewatch"],
    ids=["file", "compose-url"],
)
def test_the_container_config_validates(
    monkeypatch: pytest.MonkeyPatch, database_url: str | None
) -> None:
    if database_url is None:
        monkeypatch.delenv("ROUTEWATCH_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("ROUTEWATCH_DATABASE_URL", database_url)

    assert run(["validate", "-c", str(CONTAINER_CONFIG)]) == 0


@pytest.fixture(scope="module")
def container_config() -> Config:
    return load_config(CONTAINER_CONFIG, {})


def test_the_container_config_writes_only_to_the_data_volume(container_config: Config) -> None:
    config = container_config
    assert config.database_url == "sqlite:////data/routewatch.db"
    assert config.reports.dir.startswith("/data/")
    paths = [p.path for policy in config.policies.values() for p in policy.publish if p.path]
    assert paths
    for path in paths:
        assert path.startswith("/data/"), path
    assert config.server.port == 8787


def test_the_container_eval_set_is_the_template() -> None:
    # docker/evals/ is a copy of what `routewatch init` writes; keep them in step.
    assert (DOCKER / "evals" / EVAL_TEMPLATE).read_text() == template_text(EVAL_TEMPLATE)


# --- the compose file ------------------------------------------------------------------


def compose_tool() -> list[str] | None:
    """``docker compose`` if the plugin works, else ``docker-compose``, else None."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run(
            [*command, "version"], capture_output=True, text=True, check=False, timeout=60
        )
        if probe.returncode == 0:
            return command
    return None


@dataclass
class Rendered:
    returncode: int
    stderr: str
    data: dict[str, Any]


@pytest.fixture(scope="module")
def render() -> Any:
    tool = compose_tool()
    if tool is None:
        _skip_or_fail(
            "neither `docker compose` nor `docker-compose` works; install Docker's compose "
            "plugin or `apt-get install docker-compose` to check docker/compose.yaml"
        )

    def render_with(env: Mapping[str, str | None]) -> Rendered:
        full = {k: v for k, v in os.environ.items() if k not in env and k not in SECRET_VARS}
        full.update({k: v for k, v in env.items() if v is not None})
        result = subprocess.run(
            [*tool, "-f", str(COMPOSE), "config"],
            capture_output=True,
            text=True,
            env=full,
            check=False,
            timeout=120,
        )
        data = yaml.safe_load(result.stdout) if result.returncode == 0 else {}
        return Rendered(result.returncode, result.stderr, data or {})

    return render_with


@pytest.fixture(scope="module")
def rendered(render: Any) -> dict[str, Any]:
    result: Rendered = render({"POSTGRES_PASSWORD": PG_PASSWORD})
    assert result.returncode == 0, result.stderr
    return result.data


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool


def mounts(service: Mapping[str, Any]) -> list[Mount]:
    """Volumes in either rendering: ``src:dst[:mode]`` (docker-compose 1) or long form."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            mode = parts[2] if len(parts) > 2 else "rw"
            found.append(Mount(parts[0], parts[1], "ro" in mode.split(",")))
        else:
            found.append(
                Mount(str(volume["source"]), volume["target"], bool(volume.get("read_only")))
            )
    return found


def published_ports(service: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) in either rendering."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, str):
            spec = port.split("/")[0]
            host_ip, host_port, target = spec.rsplit(":", 2) if spec.count(":") >= 2 else (
                "", *spec.rsplit(":", 1)
            )  # fmt: skip
            found.append((host_ip, host_port, target))
        else:
            found.append(
                (str(port.get("host_ip", "")), str(port.get("published", "")), str(port["target"]))
            )
    return found


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    env = service.get("environment", {})
    if isinstance(env, list):
        pairs = [entry.split("=", 1) for entry in env]
        return {pair[0]: (pair[1] if len(pair) > 1 else None) for pair in pairs}
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def seconds(duration: str | int | float) -> float:
    """A compose duration ("75s", "1m15s", "1m0s") in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_defines_the_database_and_routewatch(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert {"db", "routewatch"} <= set(services)
    db, app = services["db"], services["routewatch"]

    assert str(db["image"]).startswith("postgres:16")
    assert "pg_isready" in json.dumps(db["healthcheck"]["test"])
    assert any(m.target == "/var/lib/postgresql/data" and not m.source.startswith("/")
               for m in mounts(db))  # fmt: skip
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["restart"] == "unless-stopped"

    build = app["build"]
    assert Path(build["context"]).resolve() == ROOT
    assert (Path(build["context"]) / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_publishes_the_port_on_loopback_only(rendered: dict[str, Any]) -> None:
    for name, service in rendered["services"].items():
        for host_ip, _, _ in published_ports(service):
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip or 'every address'}"
    assert ("127.0.0.1", "8787", "8787") in published_ports(rendered["services"]["routewatch"])


def test_compose_mounts_config_read_only_and_data_on_a_volume(
    rendered: dict[str, Any], stages: list[list[Instruction]], container_config: Config
) -> None:
    by_target = {m.target: m for m in mounts(rendered["services"]["routewatch"])}
    cmd = [_exec_form(i.args) for i in stages[-1] if i.keyword == "CMD"][-1]
    config_target = cmd[cmd.index("-c") + 1]

    config_mount = by_target[config_target]
    assert config_mount.read_only
    assert Path(config_mount.source).resolve() == CONTAINER_CONFIG
    # eval_dir resolves against the config's folder inside the container too.
    evals_target = posixpath.join(posixpath.dirname(config_target), "evals")
    assert container_config.eval_dir == str(CONTAINER_CONFIG.parent / "evals")
    evals_mount = by_target[evals_target]
    assert evals_mount.read_only
    assert Path(evals_mount.source).resolve() == DOCKER / "evals"

    data = by_target["/data"]
    assert not data.source.startswith(("/", ".")), "/data should be a named volume"
    assert data.source in rendered["volumes"]


def test_compose_stops_gracefully(rendered: dict[str, Any], container_config: Config) -> None:
    grace = seconds(rendered["services"]["routewatch"]["stop_grace_period"])
    assert grace > container_config.scheduler.stop_timeout_s


def test_compose_file_holds_no_secret_values(raw_compose: dict[str, Any]) -> None:
    for name, service in raw_compose["services"].items():
        for key, value in environment(service).items():
            if key in SECRET_VARS:
                assert value is None or INTERPOLATION.match(value), f"{name}: {key}={value}"
                if value is not None:
                    match = INTERPOLATION.match(value)
                    assert match
                    assert match.group("name") == key
            elif SECRET_NAME.search(key):
                assert value is not None, f"{name}: {key}"
                assert INTERPOLATION.match(value), f"{name}: {key}={value}"
            elif value is not None and "://" in value:
                password = urlsplit(value).password
                assert password is None or INTERPOLATION.match(password), f"{name}: {key}"
    app_env = environment(raw_compose["services"]["routewatch"])
    assert set(SECRET_VARS) <= set(app_env)


def test_compose_passes_secrets_through_from_the_host(render: Any) -> None:
    sentinels = {var: f"{var.lower()}-from-host" for var in SECRET_VARS}
    without: Rendered = render({"POSTGRES_PASSWORD": PG_PASSWORD})
    with_secrets: Rendered = render({"POSTGRES_PASSWORD": PG_PASSWORD, **sentinels})
    assert without.returncode == 0, without.stderr
    assert with_secrets.returncode == 0, with_secrets.stderr

    unset = environment(without.data["services"]["routewatch"])
    for var in SECRET_VARS:
        assert not unset.get(var), f"{var} has a value although the host has none"
    passed = environment(with_secrets.data["services"]["routewatch"])
    for var, value in sentinels.items():
        assert passed[var] == value
    assert passed["ROUTEWATCH_DATABASE_URL"] == (
        f"postgresql+psycopg://routewatch:{PG_PASSWORD}@db:5432/routewatch"
    )
    db_env = environment(with_secrets.data["services"]["db"])
    assert db_env["POSTGRES_PASSWORD"] == PG_PASSWORD
    assert db_env["POSTGRES_USER"] == "routewatch"
    assert db_env["POSTGRES_DB"] == "routewatch"


def test_compose_refuses_to_start_without_a_database_password(render: Any) -> None:
    result: Rendered = render({"POSTGRES_PASSWORD": None})

    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


# --- README ----------------------------------------------------------------------------


def test_readme_tells_how_to_run_the_container() -> None:
    readme = (ROOT / "README.md").read_text()
    if "docker/compose.yaml" not in readme:
        pytest.skip("README.md has no Docker section yet (docker compose -f docker/compose.yaml)")
    assert "docker compose -f docker/compose.yaml" in readme
    assert "docker/Dockerfile" in readme
    assert "POSTGRES_PASSWORD" in readme
