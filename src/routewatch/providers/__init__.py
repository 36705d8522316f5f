"""Talking to routes: OpenAI-compatible calls with limits, retries and error classes."""
