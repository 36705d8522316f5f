"""Templates written by ``routewatch init``, shipped as package data."""
