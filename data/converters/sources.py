"""Where raw records come from: a Hub id (through ``datasets`` / ``huggingface_hub``) or a local path.

Readers call these helpers so that "Hub id or local folder" is decided in one place (`load_table` and
`undecoded_images` are `infimed.core.datasets`'s, the loader every package shares). Nothing here downloads unless
``source`` is not an existing local path; tests always pass local fixture folders.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from infimed.core.datasets import load_table, undecoded_images

__all__ = [
    "find_image_root", "is_local", "load_table", "open_release", "read_json_rows", "resolve_files", "undecoded_images",
]


def is_local(source: str | os.PathLike) -> bool:
    return Path(source).expanduser().exists()


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


def _extract_once(archive: Path) -> Path:
    """``archive`` extracted into ``<name>.unzipped/`` beside it (once: a marker file records a complete extraction,
    so an interrupted one is redone)."""
    target = archive.parent / f"{archive.stem}.unzipped"
    marker = target / ".extracted"
    if not marker.exists():
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)
        marker.touch()
    return target


def open_release(source: str, inner: str, allow_patterns: list[str]) -> Path:
    """The folder of a released benchmark that holds ``inner`` (a relative path such as ``QA_information``).

    ``source`` may be the release folder, a folder one level above it (a zip's top-level folder), a ``.zip`` file
    or a folder holding one (extracted once, beside it), or a Hub dataset id (its files matching ``allow_patterns``
    downloaded, zips extracted). Returns the best guess (``source`` itself) when ``inner`` is found nowhere, so the
    reader's own error names what is missing.
    """
    path = Path(source).expanduser()
    if path.is_file() and zipfile.is_zipfile(path):
        root = _extract_once(path)
    elif path.exists():
        root = path
    else:
        root = resolve_files(source, allow_patterns)
    if root.is_dir() and not (root / inner).exists():
        for archive in sorted(root.glob("*.zip")):
            _extract_once(archive)
    for candidate in _release_candidates(root):
        if (candidate / inner).exists():
            return candidate
    return root


def _release_candidates(root: Path) -> list[Path]:
    """``root``, its subfolders, and their subfolders (a zip extracted beside itself adds two levels)."""
    if not root.is_dir():
        return [root]
    level1 = sorted(p for p in root.iterdir() if p.is_dir())
    level2 = [q for p in level1 for q in sorted(p.iterdir()) if q.is_dir()]
    return [root, *level1, *level2]


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
