"""The task vocabulary: question kinds, option letters and gold-label normalisation.

Every package (data converters, the demo data, curation rules, RL rewards, the evaluation harness) names a question's
kind and letters its options the same way, so this module is the one place they are defined.

    >>> QuestionKind("yes_no") is QuestionKind.YES_NO
    True
    >>> QuestionKind.YES_NO == "yes_no"  # a str enum: rows and JSON keep plain strings and still compare equal
    True
    >>> option_letters(3)
    ['A', 'B', 'C']
    >>> letter_for("ct.", ["T. gondii", "CT", "MRI"])
    'B'

Design choices:

- ``QuestionKind`` is a ``StrEnum`` rather than a ``Literal``: the members are real ``str`` objects, so datasets,
  parquet and JSON store ``"yes_no"`` unchanged and code written against the bare strings keeps working, while new
  code gets one typed name per kind;
- the kind groups below are plain tuples of the string values, derived from the enum, so error messages and reports
  that print them read exactly as before (``('yes_no', 'multiple_choice', ...)``);
- :func:`normalize_yes_no` is strict on purpose (a *gold label* that is a bare yes/no word). Reading yes/no out of a
  model's free-text answer is :func:`infimed.core.answers.extract_yes_no`, which is lenient.
"""

from __future__ import annotations

import re
import string
from enum import StrEnum
from typing import Any

__all__ = [
    "ANSWER_KINDS",
    "CHOICE_KINDS",
    "LETTERS",
    "OPEN_KINDS",
    "QuestionKind",
    "RECORD_KINDS",
    "SCORED_KINDS",
    "TEXT_KINDS",
    "letter_for",
    "normalize_yes_no",
    "option_letter",
    "option_letters",
    "strip_option_prefix",
]


class QuestionKind(StrEnum):
    """What a question asks for, which decides how its answer is prompted, parsed and scored."""

    YES_NO = "yes_no"
    """Gold ``"yes"``/``"no"``."""
    MULTIPLE_CHOICE = "multiple_choice"
    """Gold is an option letter (A, B, ...); option texts are kept apart, letters implied by position."""
    CLOSED = "closed"
    """A short closed-set answer that is not yes/no (VQA-RAD "Which side?" -> "left"). Evaluation only: a dataset row
    stores such a question as ``open`` with answer type ``CLOSED``."""
    OPEN = "open"
    """Free text, scored by normalised exact match, token F1 and optionally an LLM judge."""
    CAPTION = "caption"
    """A description or report: free text no string match can verify."""


# Every kind, in the order error messages list them.
ANSWER_KINDS: tuple[str, ...] = tuple(k.value for k in QuestionKind)
# Kinds a dataset row (``MedRecord``, the training format, the demo data) may have: ``closed`` is an evaluation-time
# split of ``open`` by the source's answer type.
RECORD_KINDS: tuple[str, ...] = tuple(k.value for k in QuestionKind if k is not QuestionKind.CLOSED)
# Answer picked from a fixed set, read by a dedicated parser (yes/no words, option letters).
CHOICE_KINDS: tuple[str, ...] = (QuestionKind.YES_NO.value, QuestionKind.MULTIPLE_CHOICE.value)
# Answer is text compared after normalisation (and reported with token-level metrics).
TEXT_KINDS: tuple[str, ...] = (QuestionKind.CLOSED.value, QuestionKind.OPEN.value, QuestionKind.CAPTION.value)
# Free-text kinds: open-answer metrics in the report and, when enabled, the LLM judge.
OPEN_KINDS: tuple[str, ...] = (QuestionKind.OPEN.value, QuestionKind.CAPTION.value)
# Kinds whose gold answer a string match can check; captions and reports need a judge, so RL rewards skip them.
SCORED_KINDS: tuple[str, ...] = (
    QuestionKind.YES_NO.value, QuestionKind.MULTIPLE_CHOICE.value, QuestionKind.OPEN.value, QuestionKind.CLOSED.value
)

# Option letters: A-Z, so at most 26 options can be lettered.
LETTERS = string.ascii_uppercase


def option_letter(index: int) -> str:
    """The letter of the option at ``index`` (0 -> ``"A"``).

    >>> option_letter(2)
    'C'
    """
    return chr(ord("A") + index)


def option_letters(num_options: int) -> list[str]:
    """``["A", "B", ...]`` for ``num_options`` options (at most 26)."""
    if not 0 <= num_options <= len(LETTERS):
        raise ValueError(f"`num_options` must be between 0 and 26 to be lettered A-Z, got {num_options}.")
    return list(LETTERS[:num_options])


_YES = {"yes", "y", "true"}
_NO = {"no", "n", "false"}


def normalize_yes_no(text: Any) -> str | None:
    """``"yes"``/``"no"`` when ``text`` is a bare yes/no answer (any case, trailing dot), else ``None``.

    >>> normalize_yes_no(" Yes. "), normalize_yes_no("No effusion")
    ('yes', None)
    """
    if not isinstance(text, str):
        return None
    word = text.strip().rstrip(".!").strip().lower()
    return "yes" if word in _YES else "no" if word in _NO else None


# "A: CT", "(B) MRI", "C. PET": a letter heading an option string.
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
    lettered form such as ``"B: CT"`` / ``"(B)"`` whose letter is in range (and whose text, if any, is option B's).

    This reads a *gold label* of a source schema; a model's answer is read by
    :func:`infimed.core.answers.extract_choice`.
    """
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
