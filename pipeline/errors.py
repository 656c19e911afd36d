"""User-facing failures: one class per kind, message built in the constructor.

The CLI catches `PipelineError` once, prints `str(exc)` on one line and exits
with `exc.exit_code`. Anything else escaping the engine is a bug and keeps its
traceback.
"""

from __future__ import annotations

import difflib
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_GATE = 3
EXIT_UNAVAILABLE = 4
EXIT_INTERRUPTED = 130


class PipelineError(Exception):
    """Base class of every error the CLI reports as one line."""

    exit_code = EXIT_FAILED


class UsageError(PipelineError):
    exit_code = EXIT_USAGE


class RecipeError(PipelineError):
    """A recipe that cannot be loaded: names the file, the line and the field."""

    exit_code = EXIT_USAGE

    def __init__(self, path: Path | str, line: int | None, field: str | None, msg: str):
        self.path, self.line, self.field, self.msg = str(path), line, field, msg
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {field}: {msg}" if field else f"{where}: {msg}")


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class GateFailed(PipelineError):
    """Raised by a stage (validate) when measured figures miss their thresholds."""

    exit_code = EXIT_GATE

    def __init__(self, failures: list[str]):
        self.failures = list(failures)
        super().__init__("gate failed: " + "; ".join(self.failures))


class KindBug(PipelineError):
    """A stage or dataset kind's own code raised while the engine asked it for key material: the kind's
    bug, not the recipe's, so the message names the kind, its module and where it raised."""

    def __init__(
        self, kind: str, module: str, file: str | None, method: str, exc: BaseException, noun: str = "stage kind"
    ):
        import traceback

        frames = traceback.extract_tb(exc.__traceback__)
        own = [f for f in frames if file and Path(f.filename) == Path(file)] or frames  # the kind's own line
        where = f" at {Path(own[-1].filename).name}:{own[-1].lineno}" if own else ""
        self.kind = kind
        super().__init__(
            f"kind {kind} ({module}): {method}() raised {type(exc).__name__}: {exc}{where}: "
            f"a bug in the {noun}, not in the recipe"
        )


class Interrupted(PipelineError):
    exit_code = EXIT_INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted")


class NameNotDefined(AttributeError):
    """A recipe names a function its module does not define: the user's to fix (a plain AttributeError
    raised while computing a key is a bug in the code that raised it). Messages name it as the
    AttributeError Python itself would raise on import."""


NameNotDefined.__name__ = "AttributeError"


def one_line(error: BaseException | str, limit: int = 400) -> str:
    """An error as the one line a table or a summary shows: its lines joined (the detail is often past the
    first: torch's `Error(s) in loading state_dict ...:`), OpenVINO's source locations left out (its message
    comes last), an exception's type in front, cut at `limit` characters; the log holds all of it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines and lines[0].startswith(("Exception from ", "Check '")):  # OpenVINO: where, then what
        lines = [line for line in lines if not line.startswith(("Exception from ", "Check '"))] or lines[-1:]
    joined = " ".join(lines)
    if isinstance(error, BaseException):
        joined = f"{type(error).__name__}: {joined}"
    return joined if len(joined) <= limit else joined[: limit - 3].rstrip() + "..."
