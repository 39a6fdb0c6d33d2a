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
from infimed.core.llm_client import image_part
from infimed.core.tasks import OPEN_KINDS
from infimed.processing.image_io import load_image

__all__ = [
    "GenerationOptions", "GenerationRequest", "PredictionCache", "batched_generate", "endpoint_generate",
    "image_digest", "model_fingerprint", "token_budget",
]

logger = logging.getLogger(__name__)


@dataclass
class GenerationOptions:
    """How predictions are generated. Greedy decoding only: benchmark numbers must be reproducible."""

    batch_size: int = field(
        default=8, metadata={"help": "Items per `generate` call. 8 keeps a 1.7B model with 729-token images well "
                                     "inside 24 GB; raise it on larger GPUs."}
    )
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Generated tokens per item (None: by question kind and protocol, see "
                                        "`token_budget`). Items that hit the limit are counted as `truncated`."}
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
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1, got {getattr(self, name)}.")


# Default token budgets. A letter, yes/no or a short phrase fits in 64 tokens; a free-text answer in 256; a
# <think> trace of a 3B reasoning model on these benchmarks runs to a few hundred, rarely past 2,000, tokens (4096
# leaves room); MedEvalKit generates up to 8192 (its `max_new_tokens` default), so its protocol uses that.
SHORT_ANSWER_TOKENS = 64
OPEN_ANSWER_TOKENS = 256
REASONING_TOKENS = 4096
MEDEVALKIT_TOKENS = 8192


def token_budget(kinds, *, reasoning: bool = False, protocol: str = "default") -> int:
    """New tokens per item for a benchmark whose items have these ``kinds`` (the largest any of them needs).

    >>> token_budget(["yes_no", "multiple_choice"]), token_budget(["yes_no", "open"])
    (64, 256)
    >>> token_budget(["yes_no"], reasoning=True), token_budget(["yes_no"], protocol="medevalkit")
    (4096, 8192)
    """
    if protocol == "medevalkit":
        return MEDEVALKIT_TOKENS
    if reasoning:
        return REASONING_TOKENS
    return max((OPEN_ANSWER_TOKENS if kind in OPEN_KINDS else SHORT_ANSWER_TOKENS for kind in kinds),
               default=SHORT_ANSWER_TOKENS)


@dataclass
class GenerationRequest:
    """One item to answer: a cache ``key``, TRL-style ``messages`` and the images their image parts refer to."""

    key: str
    messages: list[dict]
    images: list[Any] = field(default_factory=list)


class PredictionCache:
    """Append-only JSON-lines cache ``{"key", "prediction"[, "truncated"]}``.

    ``truncated`` marks a generation that stopped at the token limit, so a resumed run still counts it.

    A torn line (the run was killed mid-write) is skipped, counted in ``torn_lines`` and logged; the next append
    starts on a new line, so the torn tail never swallows the entry written after it.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, str] = {}
        self.truncated: set[str] = set()
        self.torn_lines = 0
        self._ends_mid_line = False
        if self.path and self.path.exists():
            data = self.path.read_bytes()
            self._ends_mid_line = bool(data) and not data.endswith(b"\n")
            for line in data.splitlines():
                try:
                    entry = json.loads(line.decode("utf-8"))
                    self.entries[entry["key"]] = entry["prediction"]
                    if entry.get("truncated"):
                        self.truncated.add(entry["key"])
                except (ValueError, KeyError, TypeError):  # UnicodeDecodeError is a ValueError
                    self.torn_lines += 1
            if self.torn_lines:
                logger.warning("%s: skipped %d torn line(s) (a run killed mid-write); those items are predicted "
                               "again.", self.path, self.torn_lines)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def is_truncated(self, key: str) -> bool:
        """Whether the cached generation for ``key`` stopped at the token limit."""
        return key in self.truncated

    def put_many(self, pairs: list[tuple]) -> None:
        """Store ``(key, prediction)`` or ``(key, prediction, truncated)`` entries."""
        pairs = [(p[0], p[1], bool(p[2]) if len(p) > 2 else False) for p in pairs]
        for key, prediction, truncated in pairs:
            self.entries[key] = prediction
            if truncated:
                self.truncated.add(key)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            if self._ends_mid_line:
                f.write("\n")
                self._ends_mid_line = False
            for key, prediction, truncated in pairs:
                entry = {"key": key, "prediction": prediction, **({"truncated": True} if truncated else {})}
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
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


def _budget(options: GenerationOptions) -> int:
    return options.max_new_tokens or SHORT_ANSWER_TOKENS


def _generate_or_isolate(model, processor, runnable, images, options, errors) -> list[str | None]:
    """The batch's answers; if the batch fails (one malformed item, out of memory), each item alone, so one bad
    item costs only itself. Failures are counted in ``errors`` by exception type."""
    try:
        return generate_batch(model, processor, [r.messages for _, r in runnable], images,
                              max_new_tokens=_budget(options), num_image_tokens=options.num_image_tokens)
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


def _load_request_images(request: GenerationRequest, options: GenerationOptions, errors: dict[str, int]):
    """``(request keeping at most max_images images, their loaded images)``, or None when an image cannot be loaded
    (counted under ``"image error"``). Dropped images are counted under ``"images truncated"``."""
    wanted, messages = request.images, request.messages
    if options.max_images is not None and len(wanted) > options.max_images:
        wanted = wanted[: options.max_images]
        messages = _drop_image_parts(messages, len(wanted))
        errors["images truncated"] = errors.get("images truncated", 0) + 1
    try:
        loaded = _prepare_images(wanted, options)
    except (ValueError, OSError) as exc:
        errors["image error"] = errors.get("image error", 0) + 1
        logger.warning("Item %s skipped: %s", request.key, exc)
        return None
    return GenerationRequest(request.key, messages, wanted), loaded


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
    A generation as long as the token budget (its text re-tokenized) stopped at the limit: ``cache`` marks it
    truncated (``cache.is_truncated(key)``).
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
    for batch in todo:
        runnable, images = [], []
        for i in batch:
            prepared = _load_request_images(requests[i], options, errors)
            if prepared is not None:
                runnable.append((i, prepared[0]))
                images.append(prepared[1])
        if runnable:
            answers = _generate_or_isolate(model, processor, runnable, images, options, errors)
            fresh = []
            for (i, request), text in zip(runnable, answers):
                if text is None:
                    continue  # failed alone too: counted in `errors`, left None (scored as no prediction)
                if request.key in cache:
                    text = cache.get(request.key)  # keep what an earlier run wrote (identical under greedy decoding)
                else:
                    hit_limit = len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= _budget(options)
                    fresh.append((request.key, text, hit_limit))
                results[i] = text
            cache.put_many(fresh)
        bar.update(len(batch))
    bar.close()
    if errors.get("images truncated"):
        warnings.warn(f"{errors['images truncated']} items had more than `max_images`={options.max_images} images; "
                      "the extra ones were dropped.")
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


def _openai_messages(messages: list[dict], images: list) -> list[dict]:
    """TRL-style messages (``{"type": "image"}`` placeholders) -> OpenAI messages with the images inline, in order."""
    pending, out = iter(images), []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [image_part(next(pending)) if part.get("type") == "image" else part for part in content]
        out.append({**message, "content": content})
    return out


def endpoint_generate(
    client: Any,
    requests: list[GenerationRequest],
    options: GenerationOptions,
    *,
    cache: PredictionCache | None = None,
    desc: str = "endpoint",
    progress: bool = True,
) -> tuple[list[str | None], dict[str, int]]:
    """Predictions for ``requests`` from a served model (an ``infimed.core.llm_client`` client), like
    :func:`batched_generate`: same images (``max_images``, ``max_image_side``), greedy, ``max_new_tokens`` sent as
    ``max_tokens``; concurrency and bounded retries are the client's. Requests go out in chunks, each written to
    ``cache`` as it returns, so a killed run resumes where it stopped. A failed request is ``None``, counted under
    ``"endpoint error"``; a reply the server ended for ``length`` is marked truncated in ``cache``.
    """
    from tqdm.auto import tqdm

    cache = cache if cache is not None else PredictionCache(None)
    errors: dict[str, int] = {}
    results: list[str | None] = [cache.get(r.key) for r in requests]
    todo = [i for i, r in enumerate(requests) if r.key not in cache]
    # Enough requests in flight to keep the client's worker pool busy; a chunk is also the unit written to the cache.
    chunk = 4 * max(1, getattr(client, "max_concurrency", 1))
    bar = tqdm(total=len(requests), desc=desc, disable=not progress, initial=len(requests) - len(todo))
    for start in range(0, len(todo), chunk):
        indices, bodies = [], []
        for i in todo[start:start + chunk]:
            prepared = _load_request_images(requests[i], options, errors)
            if prepared is not None:
                bodies.append(_openai_messages(prepared[0].messages, prepared[1]))
                indices.append(i)
        answers = client.complete(bodies, temperature=0.0, max_tokens=_budget(options)) if bodies else []
        fresh = []
        for i, answer in zip(indices, answers):
            if not answer.ok:
                errors["endpoint error"] = errors.get("endpoint error", 0) + 1
                logger.warning("Item %s failed: %s", requests[i].key, answer.error)
                continue
            results[i] = answer.text.strip()
            fresh.append((requests[i].key, results[i], answer.finish_reason == "length"))
        cache.put_many(fresh)
        bar.update(len(todo[start:start + chunk]))
    bar.close()
    return results, errors
