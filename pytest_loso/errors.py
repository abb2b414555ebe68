"""Bad input: the one exception type (it names the file and says how to fix it), data warnings, and
how a name that is not UTF-8 is shown in text (``TEXT_ERRORS``, ``readable``)."""

from __future__ import annotations

import codecs
import os
import stat
import warnings
from pathlib import Path


# The one rule for text the gate writes (report, Markdown, OpenMetrics, verdict, step summary, terminal,
# JUnit properties): always valid UTF-8. A lone surrogate, which is how Python shows a non-UTF-8 byte
# of a file name (os.fsdecode: b"\xff" -> "\udcff") or a "\udcff" escape in the data, is written as
# text: "\xff" for the byte it stands for, "\ud800" for any other. JSON keeps it exact ("\udcff").
TEXT_ERRORS = "pytest-loso-escape"


def _escape_surrogates(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    bad = error.object[error.start:error.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}"
                   for c in bad), error.end


codecs.register_error(TEXT_ERRORS, _escape_surrogates)


def readable(text: str) -> str:
    """``text`` as the gate writes it (see ``TEXT_ERRORS``): unchanged unless it holds a lone surrogate."""
    return text.encode("utf-8", TEXT_ERRORS).decode("utf-8")


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
        warnings.warn(LosoDataWarning(readable(message)), stacklevel=2)


def what_is_at(path: Path) -> str | None:
    """What is at ``path`` when it is neither a regular file nor nothing: "a folder", "a FIFO",
    "a device", "a socket" or "a broken link (to …)"; ``None`` otherwise. Such an entry is never
    read (a FIFO hangs, a device never ends) nor replaced (it is not the gate's)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"a broken link (to {os.readlink(path)})" if path.is_symlink() else None
    except OSError:
        return None  # e.g. permission denied: the read that follows says so
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


class LosoUsageError(ValueError):
    """The options cannot work as given: found at start, before anything is scored; pytest shows
    it as a usage error (the message names the option and the fix)."""


class ThresholdFailure(Exception):
    """Metrics were computed and break a bound (or slid from the accepted report); the message is
    the reviewer's sentence."""


class FillInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a cache fill; the message says how far it got and that a rerun
    resumes. Still a ``KeyboardInterrupt``, so whatever catches those stops as before."""
