"""``MedRecord`` -> the training conversation format shared with the demo data.

Columns: ``id``, ``images`` (list of ``datasets.Image``), ``messages`` (TRL chat format, one ``{"type": "image"}``
part per image at the start of the first user turn, assistant answer last), ``kind``, ``question``, ``answer``,
``options``, ``source``; plus ``lang`` and ``answer_type`` when ``with_extras=True``.

Prompts are built by ``infimed.core.prompts.training_prompt`` with MedEvalKit's instruction sentences (English or
Chinese by ``record.lang``), so a model is trained with the sentence it will be evaluated with; the option layout is
the demo data's:

    What organ is shown?
    Options:
    A. liver
    B. lung
    Answer with the option's letter from the given choices directly.
"""

from __future__ import annotations

from typing import Any

from infimed.core.prompts import PROMPT_TYPE_BY_KIND, training_prompt
from infimed.core.tasks import QuestionKind

from .records import MedRecord

__all__ = ["CAPTION_INSTRUCTION", "format_prompt", "format_target", "to_training_example", "records_to_dataset",
           "training_features"]

CAPTION_INSTRUCTION = "Describe the findings in this medical image."


def format_prompt(record: MedRecord) -> str:
    """The user text (without image placeholders) for one record."""
    question = record.question.strip()
    if record.kind == QuestionKind.CAPTION:
        return question or CAPTION_INSTRUCTION
    # An open question whose source marks it CLOSED gets MedEvalKit's "single word or phrase" sentence.
    closed = record.kind == QuestionKind.OPEN and record.answer_type == "CLOSED"
    kind = QuestionKind.CLOSED if closed else record.kind
    return training_prompt(question, PROMPT_TYPE_BY_KIND[kind], record.options, record.lang)


def format_target(record: MedRecord) -> str:
    """The assistant text: the letter for multiple choice, otherwise the gold answer."""
    return record.answer


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _messages(record: MedRecord) -> list[dict]:
    image_parts = [{"type": "image", "text": None} for _ in record.images]
    turns = record.meta.get("turns")
    if turns:  # multi-turn conversations keep every exchange; images go to the first user turn
        messages, placed = [], False
        for role, text in turns:
            content = [_text(text)]
            if role == "user" and not placed:
                content, placed = image_parts + content, True
            messages.append({"role": role, "content": content})
        return messages
    return [
        {"role": "user", "content": image_parts + [_text(format_prompt(record))]},
        {"role": "assistant", "content": [_text(format_target(record))]},
    ]


def to_training_example(record: MedRecord, source: str, with_extras: bool = False) -> dict[str, Any]:
    example = {
        "id": record.id,
        "images": list(record.images),
        "messages": _messages(record),
        "kind": record.kind,
        "question": record.question,
        "answer": record.answer,
        "options": list(record.options),
        "source": source,
    }
    if with_extras:
        example.update(lang=record.lang, answer_type=record.answer_type or "")
    return example


def training_features(with_extras: bool = False):
    """The ``datasets.Features`` of the training format (images undecoded until used)."""
    import datasets

    text_part = {"type": datasets.Value("string"), "text": datasets.Value("string")}
    features = {
        "id": datasets.Value("string"),
        "images": datasets.List(datasets.Image()),
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.List(text_part)}),
        "kind": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")),
        "source": datasets.Value("string"),
    }
    if with_extras:
        features.update(lang=datasets.Value("string"), answer_type=datasets.Value("string"))
    return datasets.Features(features)


def records_to_dataset(records: list[MedRecord], source: str, with_extras: bool = False):
    """A ``datasets.Dataset`` in the training format. Image paths are stored as paths (read when used or saved)."""
    import datasets

    rows = [to_training_example(r, source, with_extras) for r in records]
    columns = {name: [row[name] for row in rows] for name in training_features(with_extras)}
    return datasets.Dataset.from_dict(columns, features=training_features(with_extras))
