"""Judge prompt templates shipped with routewatch."""
