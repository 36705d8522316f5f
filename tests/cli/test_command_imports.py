"""The commands that replay and detect do not import scipy.stats (a second and 50 MB)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

DETECTING = (
    "routewatch.cli.runs",
    "routewatch.cli.serve",
    "routewatch.daemon.service",
    "routewatch.cycle",
    "routewatch.cli.demo",
)
"""``run``, ``serve`` (its command and the daemon it starts), one cycle, and ``demo``."""


def test_the_run_serve_and_cycle_modules_do_not_import_scipy_stats() -> None:
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {DETECTING!r}:
            importlib.import_module(name)
            if "scipy.stats" in sys.modules:
                print("scipy.stats came with", name)
                break
        else:
            print("no scipy.stats; detection loaded:", "routewatch.detect.findings" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "no scipy.stats; detection loaded: True"
