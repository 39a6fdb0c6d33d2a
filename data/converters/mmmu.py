"""MMMU Health & Medicine (``MMMU/MMMU``, one config per subject): rows with ``id``, ``question`` (with ``<image k>``
references), ``options`` (a Python-literal list as a string), ``answer`` (a letter for multiple choice),
``image_1``..``image_7``, ``question_type`` (``multiple-choice`` / ``open``), ``subfield``, ``img_type``."""

from __future__ import annotations

import ast
from pathlib import Path

from infimed.core.tasks import LETTERS, QuestionKind

from .records import MedRecord
from .sources import load_table

__all__ = ["read_mmmu", "HEALTH_MEDICINE_SUBJECTS"]

HEALTH_MEDICINE_SUBJECTS = (
    "Basic_Medical_Science",
    "Clinical_Medicine",
    "Diagnostics_and_Laboratory_Medicine",
    "Pharmacy",
    "Public_Health",
)
_MAX_IMAGES = 7  # MMMU rows carry image_1 .. image_7


def _parse_options(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if not value:
        return []
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"MMMU `options` is not a Python list literal: {value[:80]!r}") from exc
    return [str(v) for v in parsed]


def read_mmmu(source: str = "MMMU/MMMU", split: str | None = "validation",
              subjects: tuple[str, ...] = HEALTH_MEDICINE_SUBJECTS, **opts) -> list[MedRecord]:
    """Items of ``subjects`` (default: the five Health & Medicine subjects). A local ``source`` is the folder laid out
    as on the Hub (``<subject>/<split>-*.parquet``)."""
    split = split or "validation"
    local = Path(source).expanduser()
    records = []
    for subject in subjects:
        if local.exists() and not (local / subject).is_dir():
            continue  # a local copy may hold only some subjects
        table = load_table(source, split, config=subject)
        for row in table:
            options = _parse_options(row.get("options"))
            multiple = row.get("question_type", "multiple-choice") == "multiple-choice" and bool(options)
            answer = str(row.get("answer", "")).strip()
            images = [row[f"image_{k}"] for k in range(1, _MAX_IMAGES + 1) if row.get(f"image_{k}") is not None]
            records.append(
                MedRecord(
                    id=str(row["id"]),
                    images=images,
                    question=str(row.get("question", "")),
                    options=options,
                    answer=answer.upper() if multiple and answer.upper() in LETTERS[: len(options)] else answer,
                    kind=QuestionKind.MULTIPLE_CHOICE if multiple else QuestionKind.OPEN,
                    meta={"subject": subject, "subfield": row.get("subfield"), "img_type": row.get("img_type"),
                          "question_type": row.get("question_type"),
                          "source": {"question": str(row.get("question", "")), "answer": row.get("answer"),
                                     "options": options}},
                )
            )
    return records
