"""``MedRecord``: one benchmark or training item in a schema-neutral form.

Every raw reader in ``infimed.data.converters`` returns ``list[MedRecord]``; the evaluation loaders and the training
converters both start from it, so each public schema is parsed in exactly one place.

Conventions:
- ``kind`` is one of ``infimed.core.tasks.RECORD_KINDS``; ``answer`` is the option LETTER for ``multiple_choice``,
  ``"yes"``/``"no"`` for ``yes_no``, free text otherwise;
- ``options`` holds option texts only (letters A, B, C, ... are implied by position);
- ``images`` holds whatever the source gives (PIL image, path, bytes or a ``datasets`` image dict), decoded later
  with ``infimed.processing.image_io.load_image`` so a broken image never breaks reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infimed.core.tasks import RECORD_KINDS, QuestionKind, normalize_yes_no

__all__ = ["MedRecord", "infer_closed_kind"]


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
        if self.kind not in RECORD_KINDS:
            raise ValueError(f"Record {self.id!r}: `kind` must be one of {RECORD_KINDS}, got {self.kind!r}.")


def infer_closed_kind(answer: Any) -> str:
    """MedEvalKit's rule for VQA-RAD/PathVQA/SLAKE: a yes/no answer makes a closed question, anything else open."""
    return QuestionKind.YES_NO if normalize_yes_no(answer) else QuestionKind.OPEN
