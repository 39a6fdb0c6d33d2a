"""Image-caption pairs (ROCO and similar): a Hub dataset or parquet with an image column and a caption column, or a
CSV/JSON(L) table with an image file name column next to an image folder. Column names are looked up among the
usual spellings (``image``/``image_path``/``name``/``file_name``; ``caption``/``text``/``report``)."""

from __future__ import annotations

from pathlib import Path

from infimed.core.tasks import QuestionKind

from .records import MedRecord
from .sources import find_image_root, load_table

__all__ = ["read_caption_pairs"]

_IMAGE_KEYS = ("image", "image_path", "name", "file_name", "filename", "img")
_CAPTION_KEYS = ("caption", "text", "report", "findings")
_ID_KEYS = ("id", "image_id", "roco_id")


def _first(row: dict, keys: tuple[str, ...]):
    return next((k for k in keys if k in row), None)


def read_caption_pairs(source: str, split: str | None = "train", image_root: str | None = None, **opts):
    table = load_table(source, split)
    if not len(table):
        return []
    first = table[0]
    image_key, caption_key = _first(first, _IMAGE_KEYS), _first(first, _CAPTION_KEYS)
    if image_key is None or caption_key is None:
        raise ValueError(
            f"Caption source {source!r}: need an image column ({_IMAGE_KEYS}) and a caption column ({_CAPTION_KEYS}), "
            f"found {table.column_names}."
        )
    id_key = _first(first, _ID_KEYS)
    path = Path(source).expanduser()
    base = Path(image_root) if image_root else find_image_root(path if path.is_dir() else path.parent, ("images",))
    records = []
    for i, row in enumerate(table):
        image = row[image_key]
        if isinstance(image, str):
            image = str(base / image)
        records.append(
            MedRecord(
                id=str(row[id_key]) if id_key else f"caption-{i}",
                images=[image] if image is not None else [],
                question="",
                options=[],
                answer=str(row[caption_key] or "").strip(),
                kind=QuestionKind.CAPTION,
            )
        )
    return records
