"""Where raw records come from: a Hub id (through ``datasets`` / ``huggingface_hub``) or a local path.

Readers call these helpers so that "Hub id or local folder" is decided in one place. Nothing here downloads unless
``source`` is not an existing local path; tests always pass local fixture folders.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["is_local", "load_table", "resolve_files", "read_json_rows", "find_image_root", "undecoded_images"]

_TABLE_SUFFIXES = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".arrow": "arrow"}


def is_local(source: str | os.PathLike) -> bool:
    return Path(source).expanduser().exists()


def undecoded_images(ds):
    """Keep ``Image`` columns as ``{"bytes", "path"}`` dicts: decoding happens later, per sample, with error capture."""
    import datasets

    for name, feature in (ds.features or {}).items():  # streamed datasets may not know their features
        if isinstance(feature, datasets.Image) and feature.decode:
            ds = ds.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feature, (datasets.Sequence, datasets.List)) and isinstance(feature.feature, datasets.Image):
            ds = ds.cast_column(name, datasets.List(datasets.Image(decode=False)))
    return ds


def _pick_split_files(files: list[Path], split: str | None) -> list[Path]:
    if split is None:
        return files
    matching = [f for f in files
                if f.name.startswith((f"{split}-", f"{split}.")) or f.parent.name == split]
    return matching or files


def load_table(source: str, split: str | None = None, *, config: str | None = None, streaming: bool = False):
    """A ``datasets.Dataset`` from a Hub id (``load_dataset(source, config, split=split)``), a ``save_to_disk`` folder,
    a folder of parquet/json/csv files (files named ``<split>-*`` or under ``<split>/`` preferred), or one such file.
    Image columns stay undecoded (see ``undecoded_images``). ``streaming=True`` returns an ``IterableDataset`` for Hub
    ids and data files (a ``save_to_disk`` folder is memory-mapped anyway)."""
    import datasets

    path = Path(source).expanduser()
    if not path.exists():
        ds = datasets.load_dataset(source, config, split=split or "train", streaming=streaming)
        return undecoded_images(ds)
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{path} holds splits {list(loaded)}; pass one of them as `split`, got {split!r}.")
            loaded = loaded[split]
        return undecoded_images(loaded)
    if path.is_dir():
        root = path / config if config and (path / config).is_dir() else path
        files = sorted(f for f in root.rglob("*") if f.suffix in _TABLE_SUFFIXES and f.is_file())
        files = _pick_split_files(files, split)
        if not files:
            raise ValueError(f"No parquet/json/jsonl/csv/arrow files under {root}; point `source` at the data folder.")
    else:
        files = [path]
    builders = {_TABLE_SUFFIXES.get(f.suffix) for f in files}
    if len(builders) != 1 or None in builders:
        raise ValueError(f"Mixed or unsupported table formats under {source}: {[f.name for f in files][:5]}.")
    ds = datasets.load_dataset(builders.pop(), data_files=[str(f) for f in files], split="train", streaming=streaming)
    return undecoded_images(ds)


def resolve_files(source: str, allow_patterns: list[str]) -> Path:
    """A local folder as is, or a Hub dataset repo snapshot restricted to ``allow_patterns`` (zips are extracted
    next to themselves once)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    from huggingface_hub import snapshot_download

    root = Path(snapshot_download(source, repo_type="dataset", allow_patterns=allow_patterns))
    for archive in root.glob("*.zip"):
        marker = root / f".{archive.stem}.extracted"
        if not marker.exists():
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(root)
            marker.touch()
    return root


def read_json_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a JSON list (or ``{"data": [...]}``) or of a JSON-lines file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(text)
    if stripped.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None  # JSON lines: one object per line
        if isinstance(obj, dict):
            for key in ("data", "annotations", "questions"):
                if isinstance(obj.get(key), list):
                    return obj[key]
            return [obj]
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno} is not valid JSON ({exc.msg}); expected a JSON list or JSON lines.")
    return rows


def find_image_root(root: Path, candidates: tuple[str, ...]) -> Path:
    """The first of ``root/<candidate>`` that is a folder, else ``root`` (relative image paths resolve against it)."""
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    return root
