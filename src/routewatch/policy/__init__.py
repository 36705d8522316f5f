"""Fallback policies: the pure engine and the publishers that write its decisions out."""
