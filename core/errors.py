"""The InfiMed error hierarchy: errors caused by user input (a config, a path, a data file), not by a bug.

``infimed`` (``infimed.cli.main``) prints these as one ``error: <message>`` line and exits with status 2; the
traceback is shown only with ``infimed --debug ...`` or ``INFIMED_DEBUG=1``. Subclasses also derive from the built-in
exception a caller would already catch (``ValueError``), so ``except ValueError`` keeps working.

    raise InputFileError(f"{path}:{lineno}: duplicate id {item_id!r}; keep one prediction per id.")
"""

from __future__ import annotations

__all__ = ["InfiMedError", "InputFileError"]


class InfiMedError(Exception):
    """Base of every InfiMed error about user input; the message says what is wrong, why, and what to do instead."""


class InputFileError(InfiMedError, ValueError):
    """A user-given file or folder is missing or malformed; the message names the path (and the line, if any)."""
