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


def strip_option_prefix(text: str) -> str:
    """``"A: CT"`` / ``"(B) MRI"`` / ``"C. PET"`` -> the bare option text."""
    return _OPTION_PREFIX.sub("", text, count=1).strip()


def letter_for(answer: Any, options: list[str]) -> str | None:
    """The option letter ``answer`` denotes: a letter in range, or an option text (case/space-insensitive)."""
    if not isinstance(answer, str):
        return None
    raw = answer.strip()
    bare = strip_option_prefix(raw) if _OPTION_PREFIX.match(raw) else raw
    if len(raw) == 1 and raw.upper() in LETTERS[: len(options)]:
        return raw.upper()
    wanted = " ".join(bare.lower().split()).rstrip(".")
    for i, option in enumerate(options):
        if " ".join(option.lower().split()).rstrip(".") == wanted:
            return LETTERS[i]
    match = _OPTION_PREFIX.match(raw)
    if match and match.group(1).upper() in LETTERS[: len(options)]:
        return match.group(1).upper()
    return None
