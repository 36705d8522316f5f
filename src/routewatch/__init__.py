"""routewatch: watches the quality of production LLM routes."""

__version__ = "0.1.0"
