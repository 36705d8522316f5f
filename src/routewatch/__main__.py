"""Entry point for ``python -m routewatch``."""

from routewatch.cli import main

main()
