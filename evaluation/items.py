"""``EvalItem``: one benchmark question as the harness sees it (prompt type, scoring kind, report categories)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infimed.core.prompts import OPTION_FORMATS, PROMPT_TYPES
from infimed.core.tasks import ANSWER_KINDS, OPEN_KINDS, QuestionKind

__all__ = ["EvalItem"]


@dataclass
class EvalItem:
    """A benchmark item.

    ``kind`` decides scoring (see :func:`infimed.core.answers.score_answer`); ``prompt_type`` decides the
    instruction sentence. They differ on purpose: SLAKE's closed questions get MedEvalKit's "single word or phrase"
    prompt even when the gold answer is yes/no, but are scored as yes/no. ``category`` holds the report breakdowns
    (``answer_type`` closed/open, ``lang``, subject, modality, ...). ``images`` hold anything
    ``infimed.processing.image_io.load_image`` accepts; they are decoded only when a model needs them.
    """

    id: str
    benchmark: str
    question: str
    answer: str
    kind: str
    prompt_type: str
    options: list[str] = field(default_factory=list)
    raw_options: list[str] = field(default_factory=list)
    option_format: str = "dot"
    images: list[Any] = field(default_factory=list)
    context: str = ""
    lang: str = "en"
    category: dict[str, str] = field(default_factory=dict)
    # The dataset's own user turn (TRL messages), used with prompt_type "dataset".
    messages: list[dict] | None = None
    # The source's own strings, untouched (``question``, ``answer``, ``options``, ``context``): MedEvalKit builds its
    # prompts and scores from these (raw PMC-VQA cells "A:MRI ", SLAKE's "Yes", OmniMedVQA's text gold, MedXpertQA's
    # "Answer Choices" tail), so the compat prompt set and compat scoring read them instead of the cleaned fields.
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ANSWER_KINDS:
            raise ValueError(
                f"Item {self.id!r} of {self.benchmark}: `kind` must be one of {ANSWER_KINDS}, got {self.kind!r}."
            )
        if self.prompt_type not in PROMPT_TYPES:
            raise ValueError(
                f"Item {self.id!r} of {self.benchmark}: `prompt_type` must be one of {PROMPT_TYPES}, "
                f"got {self.prompt_type!r}."
            )
        if self.option_format not in OPTION_FORMATS:
            raise ValueError(f"Item {self.id!r}: `option_format` must be one of {list(OPTION_FORMATS)}.")
        if self.kind == QuestionKind.MULTIPLE_CHOICE and not self.options:
            raise ValueError(f"Multiple-choice item {self.id!r} of {self.benchmark} has no options.")
        self.category.setdefault("answer_type", "open" if self.kind in OPEN_KINDS else "closed")
