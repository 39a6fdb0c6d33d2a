"""LLaVA-style conversation JSON (PubMedVision, LLaVA-Med instruct): rows with ``id``, ``image`` (a path or a list
of paths, relative to an image folder) and ``conversations`` = ``[{"from": "human"|"gpt", "value": ...}, ...]`` where
the first human turn holds ``<image>`` placeholders.

The record's ``question``/``answer`` are the first exchange; all turns are kept in ``meta["turns"]`` as
``(role, text)`` pairs with placeholders removed, and the training converter emits every turn."""

from __future__ import annotations

import re
from pathlib import Path

from infimed.core.tasks import QuestionKind

from .records import MedRecord
from .sources import load_table, read_json_rows

__all__ = ["read_llava_conversations", "IMAGE_PLACEHOLDER"]

IMAGE_PLACEHOLDER = re.compile(r"\s*<image>\s*")
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def read_llava_conversations(source: str, split: str | None = "train", image_root: str | None = None, **opts):
    """Rows of a JSON/JSONL file or folder (local) or of a Hub dataset with those columns."""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix in (".json", ".jsonl"):
        rows, base = read_json_rows(path), path.parent
    else:
        rows, base = list(load_table(source, split)), path if path.is_dir() else Path(".")
    image_base = Path(image_root) if image_root else base
    records = []
    for i, row in enumerate(rows):
        images = row.get("image") or row.get("images") or []
        images = [images] if isinstance(images, (str, dict)) else list(images)
        images = [str(image_base / p) if isinstance(p, str) else p for p in images]
        turns = []
        for turn in row.get("conversations") or []:
            role = _ROLES.get(str(turn.get("from", turn.get("role", ""))).lower())
            if role is None:
                raise ValueError(f"Row {row.get('id', i)}: unknown speaker {turn.get('from')!r} in `conversations`.")
            text = IMAGE_PLACEHOLDER.sub(" ", str(turn.get("value", turn.get("content", "")))).strip()
            turns.append((role, text))
        user = next((t for r, t in turns if r == "user"), "")
        assistant = next((t for r, t in turns if r == "assistant"), "")
        records.append(
            MedRecord(
                id=str(row.get("id", f"conv-{i}")),
                images=images,
                question=user,
                options=[],
                answer=assistant,
                kind=QuestionKind.OPEN,
                meta={"turns": turns},
            )
        )
    return records
