"""VQA-RAD and PathVQA as published on the Hub (``flaviagiammarino/vqa-rad``, ``flaviagiammarino/path-vqa``):
parquet rows of ``image``, ``question``, ``answer``. A yes/no answer makes a closed (``yes_no``) item, anything
else an open one, the rule MedEvalKit uses."""

from __future__ import annotations

from infimed.core.tasks import QuestionKind, normalize_yes_no

from .records import MedRecord, infer_closed_kind
from .sources import load_table

__all__ = ["read_vqa_rad", "read_pathvqa"]


def _read_image_qa(source: str, split: str | None, name: str) -> list[MedRecord]:
    split = split or "test"
    table = load_table(source, split)
    missing = {"image", "question", "answer"} - set(table.column_names)
    if missing:
        raise ValueError(f"{name} source {source!r} lacks columns {sorted(missing)}; found {table.column_names}.")
    records = []
    for i, row in enumerate(table):
        answer = row["answer"] if isinstance(row["answer"], str) else str(row["answer"])
        kind = infer_closed_kind(answer)
        records.append(
            MedRecord(
                id=f"{name}-{split}-{i}",
                images=[row["image"]] if row["image"] is not None else [],
                question=row["question"],
                options=[],
                answer=normalize_yes_no(answer) if kind == QuestionKind.YES_NO else answer.strip(),
                kind=kind,
                answer_type="CLOSED" if kind == QuestionKind.YES_NO else "OPEN",
                meta={"source_index": i, "split": split, "source": {"question": row["question"], "answer": answer}},
            )
        )
    return records


def read_vqa_rad(source: str = "flaviagiammarino/vqa-rad", split: str | None = "test", **opts) -> list[MedRecord]:
    """VQA-RAD (Hub id or a local folder/file of its parquet)."""
    return _read_image_qa(source, split, "vqa-rad")


def read_pathvqa(source: str = "flaviagiammarino/path-vqa", split: str | None = "test", **opts) -> list[MedRecord]:
    """PathVQA (Hub id or a local folder/file of its parquet)."""
    return _read_image_qa(source, split, "pathvqa")
