"""OmniMedVQA: ``QA_information/<access>/*.json`` (one file per constituent dataset) with ``question_id``,
``image_path`` (relative to the release root), ``question``, ``gt_answer`` (option text), ``option_A``..``option_D``
(2 to 4 present), ``question_type``, ``modality_type`` (``modality`` in one file), ``dataset``."""

from __future__ import annotations


from infimed.core.tasks import LETTERS, QuestionKind, letter_for

from .records import MedRecord
from .sources import open_release, read_json_rows

__all__ = ["read_omnimedvqa"]


def read_omnimedvqa(source: str = "foreverbeliever/OmniMedVQA", split: str | None = None, access: str = "Open-access",
                    **opts) -> list[MedRecord]:
    """All items of the ``access`` part (``split`` is unused: the benchmark is the whole open-access set).

    ``source``: the release folder, ``OmniMedVQA.zip`` (top-level ``OmniMedVQA/`` inside) or a folder holding it, or
    the Hub id, whose repository holds only that zip.
    """
    root = open_release(source, "QA_information", ["OmniMedVQA.zip", "QA_information/*", "Images/*"])
    qa_dir = root / "QA_information" / access
    if not qa_dir.is_dir():
        raise ValueError(
            f"No QA_information/{access}/ folder in {source!r} (looked in {root}); `source` must be the OmniMedVQA "
            "release folder, its OmniMedVQA.zip, or the Hub id foreverbeliever/OmniMedVQA."
        )
    records = []
    for file in sorted(qa_dir.glob("*.json")):
        for i, row in enumerate(read_json_rows(file)):
            options = [str(row[f"option_{c}"]) for c in LETTERS[:4] if row.get(f"option_{c}") not in (None, "")]
            answer = letter_for(str(row.get("gt_answer", "")), options)
            records.append(
                MedRecord(
                    id=f"omnimedvqa-{row.get('question_id', f'{file.stem}-{i}')}",
                    images=[str(root / row["image_path"])] if row.get("image_path") else [],
                    question=str(row.get("question", "")),
                    options=options,
                    answer=answer or str(row.get("gt_answer", "")),
                    kind=QuestionKind.MULTIPLE_CHOICE,
                    meta={
                        "dataset": row.get("dataset", file.stem),
                        "question_type": row.get("question_type"),
                        "modality_type": row.get("modality_type", row.get("modality")),
                        "answer_matched": answer is not None,
                        "source": {"question": str(row.get("question", "")), "answer": str(row.get("gt_answer", "")),
                                   "options": options},
                    },
                )
            )
    return records
