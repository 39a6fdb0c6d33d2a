"""Builders of training-format rows and images for the curation tests (kept out of conftest: curation-only)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["blurred_png", "noise_png", "png", "row", "text_row"]


def noise_png(seed: int, size: int = 64) -> bytes:
    """A textured, distinct-per-seed image (random hashes far apart, sharp, full contrast)."""
    rng = np.random.default_rng(seed)
    return png(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))


def png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def blurred_png(seed: int, size: int = 64) -> bytes:
    """A 4 x 4 random picture upscaled bilinearly: the typical blurry 'thumbnail blown up' image, full contrast."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8))
    return png(small.resize((size, size), Image.Resampling.BILINEAR))


def row(rid: str, image, question="Is there a lesion in the left lung?", answer="yes", kind="yes_no",
        options=None, n_placeholders=None, assistant=None) -> dict:
    images = [] if image is None else [image] if not isinstance(image, list) else image
    images = [{"bytes": i, "path": None} if isinstance(i, bytes) else i for i in images]
    n = len(images) if n_placeholders is None else n_placeholders
    if kind == "multiple_choice":
        prompt = question + "\nOptions:\n" + "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(options or []))
    else:
        prompt = question
    return {
        "id": rid,
        "images": images,
        "messages": [
            {"role": "user", "content": [{"type": "image", "text": None}] * n + [{"type": "text", "text": prompt}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer if assistant is None else assistant}]},
        ],
        "kind": kind,
        "question": question,
        "answer": answer,
        "options": list(options or []),
        "source": "unit",
    }


def text_row(rid: str, question: str, answer: str, options: list[str]) -> dict:
    return row(rid, None, question=question, answer=answer, kind="multiple_choice", options=options)
