"""Batched greedy generation for any ``AutoModelForImageTextToText`` + ``AutoProcessor`` pair, with a resumable
per-item prediction cache.

Requests are sorted by prompt length (longest first, so an out-of-memory batch shows up at once) and cut into
batches of ``batch_size``; each batch goes through the one left-padded ``generate`` path,
``infimed.core.generation.generate_batch``. The processor's chat template renders TRL-style messages, so InfiMed
(``<image>`` placeholders), Qwen2.5-VL (``<|image_pad|>``) and LLaVA-style models share this path. Images of a batch
are passed flat, in placeholder order.

Resume: the batches are a pure function of the full request list, and a batch whose items are all cached is skipped,
so a killed run resumed later builds the very same batches and gives identical predictions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infimed.core.generation import generate_batch
from infimed.processing.image_io import load_image

__all__ = [
    "GenerationOptions", "GenerationRequest", "PredictionCache", "batched_generate", "image_digest", "model_fingerprint",
]

logger = logging.getLogger(__name__)


@dataclass
class GenerationOptions:
    """How predictions are generated. Greedy decoding only: benchmark numbers must be reproducible."""

    batch_size: int = field(
        default=8, metadata={"help": "Items per `generate` call. 8 keeps a 1.7B model with 729-token images well "
                                     "inside 24 GB; raise it on larger GPUs."}
    )
    max_new_tokens: int = field(
        default=64, metadata={"help": "Generated tokens per item. 64 covers a letter, yes/no or a short phrase; use "
                                      "`--reasoning` with 1024 or more for chain-of-thought answers."}
    )
    num_image_tokens: int | None = field(
        default=None, metadata={"help": "Visual tokens per image for InfiMed models (default: the checkpoint's)."}
    )
    max_images: int | None = field(
        default=None, metadata={"help": "Keep at most this many images per item (the first ones); None keeps all."}
    )
    max_image_side: int | None = field(
        default=None, metadata={"help": "Downscale images whose longer side exceeds this many pixels (dynamic-"
                                        "resolution models such as Qwen2.5-VL otherwise get the full image)."}
    )

    def __post_init__(self):
        for name in ("batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1, got {getattr(self, name)}.")


@dataclass
class GenerationRequest:
    """One item to answer: a cache ``key``, TRL-style ``messages`` and the images their image parts refer to."""

    key: str
    messages: list[dict]
    images: list[Any] = field(default_factory=list)


class PredictionCache:
    """Append-only JSON-lines cache ``{"key", "prediction"}``.

    A torn line (the run was killed mid-write) is skipped, counted in ``torn_lines`` and logged; the next append
    starts on a new line, so the torn tail never swallows the entry written after it.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, str] = {}
        self.torn_lines = 0
        self._ends_mid_line = False
        if self.path and self.path.exists():
            data = self.path.read_bytes()
            self._ends_mid_line = bool(data) and not data.endswith(b"\n")
            for line in data.splitlines():
                try:
                    entry = json.loads(line.decode("utf-8"))
                    self.entries[entry["key"]] = entry["prediction"]
                except (ValueError, KeyError, TypeError):  # UnicodeDecodeError is a ValueError
                    self.torn_lines += 1
            if self.torn_lines:
                logger.warning("%s: skipped %d torn line(s) (a run killed mid-write); those items are predicted "
                               "again.", self.path, self.torn_lines)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put_many(self, pairs: list[tuple[str, str]]) -> None:
        for key, prediction in pairs:
            self.entries[key] = prediction
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            if self._ends_mid_line:
                f.write("\n")
                self._ends_mid_line = False
            for key, prediction in pairs:
                f.write(json.dumps({"key": key, "prediction": prediction}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def model_fingerprint(model: Any, name: str | None = None) -> str:
    """A short id of the weights, for cache keys: a checkpoint folder's weight files (name, size, mtime), else the
    class, parameter count and a sum of the first parameter (cheap, and changes when the weights are retrained)."""
    parts = [str(name or "")]
    path = Path(name) if name else None
    if path is not None and path.is_dir():
        for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
            stat = f.stat()
            parts.append(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}")
    else:
        params = list(model.parameters())
        parts += [type(model).__name__, str(sum(p.numel() for p in params))]
        if params:
            parts.append(f"{float(params[0].detach().float().sum()):.8e}")
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:16]


def image_digest(image: Any) -> str:
    """A sha256 of an image's content, for cache keys: an image re-exported under the same item id is predicted again.

    Files and encoded bytes are hashed as stored; in-memory images and arrays by type, mode, size and pixels. A path
    that cannot be read is hashed by its name (generation reports the image error itself).
    """
    digest = hashlib.sha256()
    if isinstance(image, dict):  # a `datasets` Image: {"bytes": ..., "path": ...}
        image = image["bytes"] if image.get("bytes") is not None else image.get("path")
    if hasattr(image, "detach"):  # torch tensor
        image = image.detach().cpu().numpy()
    if isinstance(image, (str, os.PathLike)):
        try:
            digest.update(Path(image).read_bytes())
        except OSError:
            digest.update(f"unreadable:{image}".encode())
    elif isinstance(image, (bytes, bytearray, memoryview)):
        digest.update(bytes(image))
    elif hasattr(image, "tobytes"):  # PIL image, numpy array
        shape = getattr(image, "shape", None) or getattr(image, "size", None)
        digest.update(f"{type(image).__name__}:{getattr(image, 'mode', '')}:{getattr(image, 'dtype', '')}:{shape}"
                      .encode())
        digest.update(image.tobytes())
    else:
        digest.update(repr(image).encode())
    return digest.hexdigest()


def _prepare_images(images: list[Any], options: GenerationOptions) -> list:
    from PIL import Image

    loaded = [load_image(image) for image in images]
    if options.max_image_side:
        side = options.max_image_side
        loaded = [
            im.resize((max(1, round(im.width * side / max(im.size))), max(1, round(im.height * side / max(im.size)))),
                      Image.BICUBIC) if max(im.size) > side else im
            for im in loaded
        ]
    return loaded


def _generate_or_isolate(model, processor, runnable, images, options, errors) -> list[str | None]:
    """The batch's answers; if the batch fails (one malformed item, out of memory), each item alone, so one bad
    item costs only itself. Failures are counted in ``errors`` by exception type."""
    try:
        return generate_batch(model, processor, [r.messages for _, r in runnable], images,
                              max_new_tokens=options.max_new_tokens, num_image_tokens=options.num_image_tokens)
    except (ValueError, RuntimeError) as exc:
        if len(runnable) == 1:
            reason = f"generation error ({type(exc).__name__})"
            errors[reason] = errors.get(reason, 0) + 1
            logger.warning("Item %s failed: %s", runnable[0][1].key, exc)
            return [None]
        logger.warning("A batch of %d failed (%s); retrying its items one by one.", len(runnable), exc)
        return [
            _generate_or_isolate(model, processor, [pair], [ims], options, errors)[0]
            for pair, ims in zip(runnable, images)
        ]


def batched_generate(
    model: Any,
    processor: Any,
    requests: list[GenerationRequest],
    options: GenerationOptions,
    *,
    cache: PredictionCache | None = None,
    desc: str = "generate",
    progress: bool = True,
) -> tuple[list[str | None], dict[str, int]]:
    """Predictions for ``requests`` (same order) and error counts by reason.

    An item whose images cannot be loaded gets ``None`` and is counted under ``"image error"``; the rest of its
    batch still runs. Items with more than ``max_images`` images keep the first ones (counted, with one warning).
    """
    from tqdm.auto import tqdm

    if options.num_image_tokens and not hasattr(processor, "num_image_tokens"):
        warnings.warn("`num_image_tokens` is ignored: this processor has no fixed image-token count (not InfiMed).")
        options = GenerationOptions(**{**options.__dict__, "num_image_tokens": None})
    cache = cache if cache is not None else PredictionCache(None)
    tokenizer = getattr(processor, "tokenizer", processor)
    errors: dict[str, int] = {}
    image_token = getattr(processor, "image_token", None)
    if image_token:
        cleaned = [_strip_literal_image_tokens(r.messages, image_token) for r in requests]
        if sum(n for _, n in cleaned):
            errors["literal image tokens removed from text"] = sum(n for _, n in cleaned)
            requests = [GenerationRequest(r.key, m, r.images) for r, (m, _) in zip(requests, cleaned)]
    # Sort key: prompt tokens plus image tokens (fixed per image for InfiMed; unknown, so 0, for dynamic resolution).
    per_image = options.num_image_tokens or getattr(processor, "num_image_tokens", 0) or 0
    texts = [processor.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in requests]
    lengths = [len(tokenizer(t)["input_ids"]) + per_image * len(r.images) for t, r in zip(texts, requests)]
    order = sorted(range(len(requests)), key=lambda i: (-lengths[i], i))
    batches = [order[i:i + options.batch_size] for i in range(0, len(order), options.batch_size)]
    results: list[str | None] = [cache.get(r.key) for r in requests]
    todo = [b for b in batches if any(requests[i].key not in cache for i in b)]
    bar = tqdm(total=len(requests), desc=desc, disable=not progress, initial=len(requests) - sum(map(len, todo)))
    truncated = 0
    for batch in todo:
        runnable, images = [], []
        for i in batch:
            request = requests[i]
            wanted = request.images
            if options.max_images is not None and len(wanted) > options.max_images:
                wanted, truncated = wanted[: options.max_images], truncated + 1
            try:
                loaded = _prepare_images(wanted, options)
            except (ValueError, OSError) as exc:
                errors["image error"] = errors.get("image error", 0) + 1
                logger.warning("Item %s skipped: %s", request.key, exc)
                continue
            messages = request.messages
            if len(wanted) < len(request.images):
                messages = _drop_image_parts(messages, len(wanted))
            runnable.append((i, GenerationRequest(request.key, messages, wanted)))
            images.append(loaded)
        if runnable:
            answers = _generate_or_isolate(model, processor, runnable, images, options, errors)
            fresh = []
            for (i, request), text in zip(runnable, answers):
                if text is None:
                    continue  # failed alone too: counted in `errors`, left None (scored as no prediction)
                if request.key in cache:
                    text = cache.get(request.key)  # keep what an earlier run wrote (identical under greedy decoding)
                else:
                    fresh.append((request.key, text))
                results[i] = text
            cache.put_many(fresh)
        bar.update(len(batch))
    bar.close()
    if truncated:
        warnings.warn(
            f"{truncated} items had more than `max_images`={options.max_images} images; the extra ones were dropped."
        )
        errors["images truncated"] = truncated
    return results, errors


def _strip_literal_image_tokens(messages: list[dict], token: str) -> tuple[list[dict], int]:
    """Remove ``token`` typed inside text parts (a question quoting "<image>"), which would otherwise add a
    placeholder without an image; returns the cleaned copy and how many were removed."""
    removed, out = 0, []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "text" and token in part.get("text", ""):
                    removed += part["text"].count(token)
                    part = {**part, "text": part["text"].replace(token, "")}
                parts.append(part)
            message = {**message, "content": parts}
        out.append(message)
    return out, removed


def _drop_image_parts(messages: list[dict], keep: int) -> list[dict]:
    """Copy of ``messages`` keeping only the first ``keep`` image parts (so placeholders match the images kept)."""
    out, seen = [], 0
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image":
                    seen += 1
                    if seen > keep:
                        continue
                parts.append(part)
            message = {**message, "content": parts}
        out.append(message)
    return out
