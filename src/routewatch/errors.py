"""The exceptions routewatch raises, and ``Problem``, one finding in an input file.

The tree::

    RoutewatchError
    ├── InputError            exit 1; carries every Problem found, raised once
    │   ├── ConfigError       routewatch.yaml
    │   ├── EvalSetError      evals/*.yaml, evals/*.jsonl
    │   └── UsageError        command-line arguments
    ├── ProviderError         a call to a route or judge failed after its retries
    ├── JudgeError            a judge gave no usable verdict
    ├── DeliveryError         an alert could not be delivered
    ├── MissingSecretError    a secret's environment variable is not set
    ├── DatabaseError         the store cannot be reached or migrated
    ├── OutputError           a file or folder routewatch writes cannot be written
    └── NotBuiltError         the command exists in the contract but not yet in code

``cli.main`` alone maps these to exit codes; every other module raises them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MESSAGE_LIMIT = 1000
"""Characters of a problem's message that are printed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with an input file, located so a person can fix it.

    ``str(problem)`` is ``path:line: field: message``; ``line`` is 1-based and
    ``None`` when the problem has no place in the file (a missing file).
    """

    path: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        field = self.field or "(file)"
        message = self.message
        if len(message) > MESSAGE_LIMIT:
            # A message may quote the value at fault, and a value may be megabytes.
            cut = len(message) - MESSAGE_LIMIT
            message = f"{message[:MESSAGE_LIMIT]}... ({cut} more characters)"
        return f"{where}: {field}: {message}"


class RoutewatchError(Exception):
    """The root of every error routewatch raises on purpose."""


class InputError(RoutewatchError):
    """Bad input; carries every problem found so they can be fixed in one pass."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(InputError):
    """Problems in ``routewatch.yaml``."""


class EvalSetError(InputError):
    """Problems in an eval-set file."""


class UsageError(InputError):
    """A command was called with arguments that cannot work."""

    def __init__(self, message: str) -> None:
        super().__init__([Problem(path="command line", line=None, field="", message=message)])
        self.message = message

    def __str__(self) -> str:
        return self.message


class ProviderError(RoutewatchError):
    """A call to a provider failed after its retries."""

    def __init__(
        self, message: str, *, error_class: str, attempts: int, status: int | None = None
    ) -> None:
        self.error_class = error_class
        self.attempts = attempts
        self.status = status
        status_part = f", HTTP {status}" if status is not None else ""
        super().__init__(f"{message} ({error_class} after {attempts} attempt(s){status_part})")


class JudgeError(RoutewatchError):
    """A judge returned no verdict that could be parsed."""


class DeliveryError(RoutewatchError):
    """An alert could not be delivered to its receiver."""


class DatabaseError(RoutewatchError):
    """The store could not be reached, created or migrated."""


class OutputError(RoutewatchError):
    """A file or folder routewatch writes (a report, a new project) cannot be written."""


class UnavailableError(RoutewatchError):
    """The service cannot take the request now (it is stopping, or not yet running)."""


class ListenError(RoutewatchError):
    """An HTTP server could not listen on its address (the port is taken, the host unknown)."""


class MissingSecretError(RoutewatchError):
    """A secret's environment variable is unset; the message names it, never a value."""

    def __init__(self, var: str, *, needed_for: str = "") -> None:
        self.var = var
        purpose = f" (needed for {needed_for})" if needed_for else ""
        super().__init__(
            f"environment variable {var} is not set{purpose}; export it before running, "
            f"or change the *_env field in routewatch.yaml that names it"
        )


class NotBuiltError(RoutewatchError):
    """A command named by the design that this version does not implement yet."""

    def __init__(self, command: str) -> None:
        self.command = command
        super().__init__(f"`routewatch {command}` is not implemented in this version yet")


def display_path(path: Path) -> str:
    """Return ``path`` relative to the working directory when it lies under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
