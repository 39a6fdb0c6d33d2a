"""``MedRecord``: one benchmark or training item in a schema-neutral form.

Every raw reader in ``infimed.data.converters`` returns ``list[MedRecord]``; the evaluation loaders and the training
converters both start from it, so each public schema is parsed in exactly one place.

Conventions:
- ``answer`` is the option LETTER for ``multiple_choice``, ``"yes"``/``"no"`` for ``yes_no``, free text otherwise;
- ``options`` holds option texts only (letters A, B, C, ... are implied by position);
- ``images`` holds whatever the source gives (PIL image, path, bytes or a ``datasets`` image dict), decoded later
  with ``infimed.processing.image_io.load_image`` so a broken image never breaks reading.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MedRecord", "KINDS", "LETTERS", "infer_closed_kind", "letter_for", "normalize_yes_no", "strip_option_prefix"
]

KINDS = ("yes_no", "multiple_choice", "open", "caption")
LETTERS = string.ascii_uppercase

_YES = {"yes", "y", "true"}
_NO = {"no", "n", "false"}


@dataclass
class MedRecord:
    """A normalised item. ``extra``-style fields of the source schema live in ``meta``."""

    id: str
    images: list[Any]
    question: str
    options: list[str]
    answer: str
    kind: str
    answer_type: str | None = None
    lang: str = "en"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Record {self.id!r}: `kind` must be one of {KINDS}, got {self.kind!r}.")


def normalize_yes_no(text: Any) -> str | None:
    """``"yes"``/``"no"`` when ``text`` is a bare yes/no answer (any case, trailing dot), else ``None``."""
    if not isinstance(text, str):
        return None
    word = text.strip().rstrip(".!").strip().lower()
    return "yes" if word in _YES else "no" if word in _NO else None


def infer_closed_kind(answer: Any) -> str:
    """MedEvalKit's rule for VQA-RAD/PathVQA/SLAKE: a yes/no answer makes a closed question, anything else open."""
    return "yes_no" if normalize_yes_no(answer) else "open"


_OPTION_PREFIX = re.compile(r"^\s*\(?([A-Za-z])[\.:\)]\s*")


def strip_option_prefix(text: str, letter: str | None = None) -> str:
    """``"A: CT"`` / ``"(B) MRI"`` / ``"C. PET"`` -> the bare option text. With ``letter`` given, only that letter's
    prefix is removed, so an option such as ``"T. gondii"`` in position A keeps its text."""
    match = _OPTION_PREFIX.match(text)
    if match and (letter is None or match.group(1).upper() == letter.upper()):
        return text[match.end() :].strip()
    return text.strip()


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def letter_for(answer: Any, options: list[str]) -> str | None:
    """The option letter ``answer`` denotes: a letter in range, an option text (case/space-insensitive), or a
    lettered form such as ``"B: CT"`` / ``"(B)"`` whose letter is in range (and whose text, if any, is option B's)."""
    if not isinstance(answer, str):
        return None
    raw = answer.strip()
    letters = LETTERS[: len(options)]
    if len(raw) == 1 and raw.upper() in letters:
        return raw.upper()
    for i, option in enumerate(options):
        if _norm(option) == _norm(raw):
            return LETTERS[i]
    match = _OPTION_PREFIX.match(raw)
    if match and match.group(1).upper() in letters:
        letter = match.group(1).upper()
        rest = raw[match.end() :].strip()
        if not rest or _norm(rest) == _norm(options[letters.index(letter)]):
            return letter
    return None
