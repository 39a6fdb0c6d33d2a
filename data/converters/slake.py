"""SLAKE (``BoKelvin/SLAKE``): ``<split>.json`` rows with ``img_name``, ``question``, ``answer``, ``answer_type``
(OPEN/CLOSED), ``q_lang`` (en/zh), plus ``qid``, ``modality``, ``location``, ``content_type``; images under
``imgs/<img_name>``.

Kind: a CLOSED item whose answer is yes/no is ``yes_no``; every other item (Chinese closed answers such as 是/否
included, kept verbatim) is ``open`` with the official ``answer_type`` kept, so CLOSED accuracy can still be
computed."""

from __future__ import annotations


from infimed.core.tasks import QuestionKind, normalize_yes_no

from .records import MedRecord
from .sources import find_image_root, read_json_rows, resolve_files

__all__ = ["read_slake"]


def read_slake(source: str = "BoKelvin/SLAKE", split: str | None = "test", lang: str | None = None, **opts):
    """SLAKE items of ``split``; ``lang="en"``/``"zh"`` keeps one language (default both)."""
    split = split or "test"
    root = resolve_files(source, [f"{split}.json", "imgs.zip"])
    annotation = root / f"{split}.json" if root.is_dir() else root
    if not annotation.exists():
        raise ValueError(f"SLAKE annotation {annotation} not found; `source` must be the folder holding {split}.json.")
    image_root = find_image_root(annotation.parent, ("imgs",))
    records = []
    for i, row in enumerate(read_json_rows(annotation)):
        row_lang = row.get("q_lang", "en")
        if lang is not None and row_lang != lang:
            continue
        answer = str(row.get("answer", "")).strip()
        answer_type = str(row.get("answer_type", "")).upper() or None
        yes_no = normalize_yes_no(answer) if answer_type != "OPEN" else None
        records.append(
            MedRecord(
                id=f"slake-{split}-{row.get('qid', i)}",
                images=[str(image_root / row["img_name"])] if row.get("img_name") else [],
                question=str(row.get("question", "")),
                options=[],
                answer=yes_no or answer,
                kind=QuestionKind.YES_NO if yes_no else QuestionKind.OPEN,
                answer_type=answer_type,
                lang=row_lang,
                meta={**{k: row[k] for k in ("img_name", "modality", "location", "content_type") if k in row},
                      "source": {"question": str(row.get("question", "")), "answer": str(row.get("answer", ""))}},
            )
        )
    return records
