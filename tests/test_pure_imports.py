"""Pure modules import no I/O: no database, no HTTP, no scheduler, no shell of ours."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "routewatch"
PURE = [
    PACKAGE / name
    for name in (
        "checks.py",
        "scoring.py",
        "incidents.py",
        "policy/engine.py",
        "alerts/slack_blocks.py",
        "report/svg.py",
        "judge/verdict.py",
        "judge/variance.py",
        "judge/agreement.py",
    )
] + sorted((PACKAGE / "detect").glob("**/*.py"))
FORBIDDEN = (
    *("sqlalchemy", "httpx", "apscheduler", "aiohttp", "starlette", "uvicorn"),
    *("routewatch.store", "routewatch.providers", "routewatch.runner"),
)


def imported_names(source: str, package: str) -> set[str]:
    """Every module ``source`` imports; relative imports resolved against ``package``."""
    parts = package.split(".")
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *filter(None, [node.module])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def forbidden(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f"{f}.") for f in FORBIDDEN))


@pytest.mark.parametrize("path", [p for p in PURE if p.is_file()], ids=lambda p: p.name)
def test_pure_module_imports_no_io(path: Path) -> None:
    package = ".".join(["routewatch", *path.relative_to(PACKAGE).parent.parts])

    assert forbidden(imported_names(path.read_text(encoding="utf-8"), package)) == []


def test_relative_and_from_imports_are_caught() -> None:
    source = "from ..store import tables\nfrom routewatch import runner\nfrom . import sigma\n"

    names = imported_names(source + "import httpx._api\n", "routewatch.detect")

    assert forbidden(names) == [
        "httpx._api",
        "routewatch.runner",
        "routewatch.store",
        "routewatch.store.tables",
    ]


def test_the_replay_path_does_not_load_scipy_stats() -> None:
    """scipy.stats costs ~50 MB of RSS; a replay needs none of it (bench/replay.py: < 150 MB).

    Detection does not load it either (``detect/dist.py``);
    ``tests/cli/test_command_imports.py`` checks the commands that detect.
    """
    import subprocess
    import sys

    code = (
        "import sys, routewatch.runner\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy.stats')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"
