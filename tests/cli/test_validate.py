"""`routewatch validate` on a scaffolded project broken in the ways people break files."""

from pathlib import Path

import pytest

from routewatch.cli import run
from routewatch.scaffold import write_project

CONFIG = "routewatch.yaml"
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
        "cron '0 25 * * *'",
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
