"""Bad input: the one exception type (it names the file and says how to fix it), and data warnings."""

from __future__ import annotations

import warnings
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


class LosoDataWarning(UserWarning):
    """The data was usable but not as it should be (e.g. frames dropped to align a pair)."""


def data_warning(message: str) -> None:
    """Warn about the data, shown in pytest's warnings summary even under ``-W error``: a data
    warning must not turn the gate's collection, or a test, into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", LosoDataWarning)
        warnings.warn(LosoDataWarning(message), stacklevel=2)


def not_a_regular_file(path: Path) -> bool:
    """Something other than a regular file is at ``path``: a folder, FIFO, device or broken link.
    Such an entry is never read (a FIFO hangs, a device never ends) nor replaced (it is not ours)."""
    return (path.exists() or path.is_symlink()) and not path.is_file()
