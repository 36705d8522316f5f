"""The built-in simulated OpenAI-compatible provider (``routewatch sim serve``)."""
