"""Exceptions for problems the user can fix (bad input, bad options).

Every error raised for user input derives from :class:`MDNextError`; its message is a single
line that names the file (where there is one) and the problem. The CLI turns it into exit code
2 without a traceback.
"""

from __future__ import annotations


class MDNextError(Exception):
    """A problem with the user's input or options, described in one line."""


class InputError(MDNextError, ValueError):
    """A trajectory, topology or model file that cannot be read or does not fit."""


class FramesError(MDNextError, ValueError):
    """Arrays that do not form a valid :class:`~mdnext.frames.Frames`."""


class OutputError(MDNextError, OSError):
    """An output file that cannot or must not be written (exists, unknown format, …)."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
