"""MedXpertQA-MM (``TsinghuaC3I/MedXpertQA``, config ``MM``): rows with ``id``, ``question`` (ending with an
"Answer Choices: (A) ..." block), ``options`` (letter -> text), ``label`` (letter), ``images`` (file names inside
``images.zip``), ``medical_task``, ``body_system``, ``question_type``."""

from __future__ import annotations

import re
from pathlib import Path

from infimed.core.tasks import QuestionKind

from .records import MedRecord
from .sources import find_image_root, load_table, read_json_rows, resolve_files

__all__ = ["read_medxpertqa_mm"]

_CHOICES_BLOCK = re.compile(r"\s*Answer Choices:.*$", re.S)


def _rows(source: str, split: str) -> tuple[list[dict], Path | None]:
    path = Path(source).expanduser()
    if path.exists():
        base = path if path.is_dir() else path.parent
        for candidate in (path, base / "MM" / f"{split}.jsonl", base / f"{split}.jsonl", base / "MM" / f"{split}.json"):
            if candidate.is_file():
                return read_json_rows(candidate), find_image_root(base, ("images", "MM/images"))
        raise ValueError(f"No MM/{split}.jsonl or {split}.jsonl under {path}.")
    table = load_table(source, split, config="MM")
    root = resolve_files(source, ["images.zip"])
    return list(table), find_image_root(root, ("images",))


def read_medxpertqa_mm(source: str = "TsinghuaC3I/MedXpertQA", split: str | None = "test", **opts):
    split = split or "test"
    rows, image_root = _rows(source, split)
    records = []
    for row in rows:
        raw_options = row.get("options") or {}
        letters = sorted(k for k, v in raw_options.items() if v is not None)
        options = [str(raw_options[k]) for k in letters]
        label = str(row.get("label", "")).strip().upper()
        records.append(
            MedRecord(
                id=str(row.get("id")),
                images=[str(image_root / name) for name in row.get("images") or []],
                question=_CHOICES_BLOCK.sub("", str(row.get("question", ""))).strip(),
                options=options,
                answer=label,
                kind=QuestionKind.MULTIPLE_CHOICE,
                meta={**{k: row.get(k) for k in ("medical_task", "body_system", "question_type")},
                      "source": {"question": str(row.get("question", "")), "answer": label}},
            )
        )
    return records
