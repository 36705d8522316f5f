"""LLM judges: the prompt, the verdict, and the cached calls that score outputs by criteria."""
