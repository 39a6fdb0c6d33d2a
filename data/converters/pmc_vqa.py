"""PMC-VQA (``RadGenome/PMC-VQA``): ``<split>.csv`` files; figures in a folder next to the CSV (``figures/``,
``images/`` or ``images_2/``).

- ``test_2.csv`` (the benchmark): ``index, Figure_path, Caption, Question, Choice A, Choice B, Choice C, Choice D,
  Answer, split``, with ``Answer`` the letter;
- ``train.csv`` / older files: ``Figure_path, Question, Answer`` (the text), ``Choice A``..``Choice D``,
  ``Answer_label`` (the letter).

Choice cells read like ``"A:CT "``; the bare texts become ``options`` and the cells themselves are kept, untouched, in
``meta["source"]["options"]`` (MedEvalKit prompts and compares with the raw cells)."""

from __future__ import annotations

import csv

from infimed.core.tasks import QuestionKind, letter_for, strip_option_prefix

from .records import MedRecord
from .sources import find_image_root, resolve_files

__all__ = ["read_pmc_vqa"]

_IMAGE_DIRS = ("figures", "images", "images_2", "figures_2")


def read_pmc_vqa(source: str = "RadGenome/PMC-VQA", split: str | None = "test_2", image_dir: str | None = None, **opts):
    split = split or "test_2"
    root = resolve_files(source, [f"{split}.csv", "images_2.zip"])
    table = root / f"{split}.csv" if root.is_dir() else root
    if not table.exists():
        raise ValueError(f"PMC-VQA table {table} not found; `source` must be the folder holding {split}.csv.")
    image_root = find_image_root(table.parent, (image_dir,) if image_dir else _IMAGE_DIRS)
    records = []
    with open(table, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            cells = [(c, row.get(f"Choice {c}") or "") for c in "ABCD"]
            options = [strip_option_prefix(text, c) for c, text in cells if text.strip()]
            answer = letter_for(row.get("Answer_label") or "", options) or letter_for(row.get("Answer") or "", options)
            records.append(
                MedRecord(
                    id=f"pmc-vqa-{split}-{i}",
                    images=[str(image_root / row["Figure_path"])] if row.get("Figure_path") else [],
                    question=(row.get("Question") or "").strip(),
                    options=options,
                    answer=answer or (row.get("Answer") or "").strip(),  # unmatched answers stay visible to curation
                    kind=QuestionKind.MULTIPLE_CHOICE,
                    meta={"figure_path": row.get("Figure_path"), "answer_matched": answer is not None,
                          "caption": row.get("Caption"),
                          "source": {"question": row.get("Question") or "", "answer": row.get("Answer") or "",
                                     "options": [text for _, text in cells]}},
                )
            )
    return records
