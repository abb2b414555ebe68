"""The one exception type for bad input: it names the file and says how to fix it."""

from __future__ import annotations

from pathlib import Path


class LosoInputError(Exception):
    """A file the gate was given cannot be used as it is.

    ``str()`` is the whole user-facing message: the file, what is wrong with it,
    and (when there is one) what to do about it. Items print it instead of a traceback.
    """

    def __init__(self, path: Path | str, problem: str, fix: str | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.problem}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text
