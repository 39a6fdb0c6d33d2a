"""Encode vision-language chat samples once, before packing: token ids, labels, image counts, and why a sample is bad.

Packing needs every sample's length up front, so samples are tokenized ahead of training. Images are NOT decoded
here: the token count of an image comes from the processor's rule (`num_image_tokens` for InfiMed, the header size
for Qwen2-VL, see `image_placeholders`), and the collator decodes and processes images on the fly in the DataLoader
workers, as TRL does. A sample whose image is missing (None, no such file, empty bytes, unreadable header) is dropped
here; a file that is corrupt past its header is found by the collator and skipped there (counted, never a crash).

A bad sample is never silently lost: it is dropped with one of `DROP_REASONS` counted in a `DropReport`, or raises
when `strict=True`. `encode_dataset` caches its result with `datasets` under a fingerprint of the dataset and the
encoder's settings (`SampleEncoder.fingerprint`), so a restarted run does not encode again (docs/data-loading.md).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets.fingerprint import Hasher

from infimed.core.datasets import undecoded_images
from infimed.processing.image_io import load_image

from .image_placeholders import image_stand_in, stand_in_for

__all__ = ["DROP_REASONS", "ENCODER_VERSION", "EXAMPLES_PER_REASON", "DropReport", "SampleEncoder",
           "count_placeholders", "encode_dataset"]

logger = logging.getLogger(__name__)

DROP_REASONS = (
    "too_long",  # longer than max_length once image placeholders expand: cutting it would cut image tokens
    "too_many_images",  # more images than a packed row may hold
    "bad_image",  # missing, unreadable or corrupt image
    "image_mismatch",  # number of image placeholders in the messages != number of images
    "empty_assistant",  # no assistant answer, or nothing left to train on after masking
)
# Part of the encoding cache's fingerprint: bump it whenever `SampleEncoder` output changes for the same inputs, so
# caches written by an older encoder are not reused.
ENCODER_VERSION = "2-lazy-images"
# Sample ids kept per reason in the report, enough to find them without bloating the run summary.
EXAMPLES_PER_REASON = 5


@dataclass
class DropReport:
    """Samples dropped before packing, by reason, with a few example ids per reason."""

    total: int = 0
    kept: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return sum(self.counts.values())

    def add(self, reason: str, sample_id: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        ids = self.examples.setdefault(reason, [])
        if len(ids) < EXAMPLES_PER_REASON:
            ids.append(sample_id)

    def to_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept, "dropped": self.dropped, "by_reason": dict(self.counts),
                "examples": {k: list(v) for k, v in self.examples.items()}}


def count_placeholders(messages: list[dict]) -> int:
    """Image blocks (`{"type": "image"}`) across all messages."""
    return sum(
        1
        for m in messages
        if isinstance(m.get("content"), list)
        for block in m["content"]
        if isinstance(block, dict) and block.get("type") == "image"
    )


def _assistant_text(messages: list[dict]) -> str:
    parts = []
    for m in messages:
        if m.get("role") != "assistant":
            continue
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text")
    return "".join(parts)


def _sample_images(example: dict) -> list:
    if "images" in example:
        return list(example["images"] or [])
    if "image" in example and example["image"] is not None:
        return [example["image"]]
    return []


@dataclass
class SampleEncoder:
    """Encode one `{"messages", "images"}` example into `input_ids`, `labels`, `num_images`, `length`, `drop_reason`.

    Images are not decoded (see the module docstring); `decode_images=True` restores the old path that decodes each
    image with `load_image` and passes it to the processor (the reference the lazy path is tested against, and the
    path taken for processors whose placeholder expansion `image_placeholders` does not know).

    Args:
        processor: the model's processor (`apply_chat_template` with `{% generation %}` markers for assistant masks).
        max_length: token budget of a packed row; longer samples are dropped (`too_long`).
        assistant_only_loss: labels only on assistant turns (SFT); `False` trains on all text (caption pretraining).
        image_token_id: image placeholder token; never a label.
        max_images: images per row; samples with more are dropped (`too_many_images`). `None`: unbounded.
        chat_template: overrides the processor's template (TRL's training template when it lacks markers).
        decode_images: decode every image while encoding (slow; validates images before training).
    """

    processor: Any
    max_length: int
    assistant_only_loss: bool = True
    image_token_id: int | None = None
    max_images: int | None = None
    chat_template: str | None = None
    decode_images: bool = False

    def __post_init__(self):
        self._stand_in = None if self.decode_images else stand_in_for(self.processor)

    def __getstate__(self):  # `datasets.map(num_proc=...)` pickles the encoder; the stand-in is rebuilt there
        state = dict(self.__dict__)
        state.pop("_stand_in", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__post_init__()

    def fingerprint(self) -> str:
        """A hash of everything that decides this encoder's output for a given example (the encoding cache key)."""
        from datasets.fingerprint import Hasher

        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        vocab = sorted(tokenizer.get_vocab().items())
        image_processor = getattr(self.processor, "image_processor", None)
        return Hasher.hash({
            "version": ENCODER_VERSION,
            "max_length": self.max_length,
            "assistant_only_loss": self.assistant_only_loss,
            "image_token_id": self.image_token_id,
            "max_images": self.max_images,
            "chat_template": self.chat_template or getattr(self.processor, "chat_template", None),
            "tokenizer": [type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), Hasher.hash(vocab)],
            "num_image_tokens": getattr(self.processor, "num_image_tokens", None),
            "image_processor": image_processor.to_json_string() if hasattr(image_processor, "to_json_string") else "",
            "decode_images": self.decode_images,
        })

    def __call__(self, example: dict) -> dict:
        out = {"input_ids": [], "labels": [], "num_images": 0, "length": 0, "drop_reason": "", "drop_detail": ""}

        def drop(reason: str, detail: str) -> dict:
            out.update(drop_reason=reason, drop_detail=detail)
            return out

        messages = example["messages"]
        images = _sample_images(example)
        out["num_images"] = len(images)
        placeholders = count_placeholders(messages)
        # String contents get their image blocks from TRL's convention (before the first user turn), so only
        # structured messages can disagree with the images.
        if placeholders != len(images) and any(isinstance(m.get("content"), list) for m in messages):
            return drop("image_mismatch", f"{placeholders} image placeholder(s) but {len(images)} image(s)")
        if not _assistant_text(messages).strip():
            return drop("empty_assistant", "the assistant turn is missing or empty")
        if self.max_images is not None and len(images) > self.max_images:
            return drop("too_many_images", f"{len(images)} images > max_images_per_row={self.max_images}")

        from trl.data_utils import prepare_multimodal_messages

        processor = self._stand_in or self.processor
        prepared = []
        for k, image in enumerate(images):
            if image is None:
                return drop("bad_image", f"image {k} is missing (None)")
            try:
                if self._stand_in is not None:
                    prepared.append(image_stand_in(image, sized=self._stand_in.image_processor.sized))
                else:
                    prepared.append(load_image(image))
            except Exception as err:  # ImageHeaderError/ImageLoadError, and whatever a broken file throws from PIL
                return drop("bad_image", f"image {k}: {err}")
        try:
            encoded = processor.apply_chat_template(
                prepare_multimodal_messages(messages, images=prepared),
                chat_template=self.chat_template,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
                return_assistant_tokens_mask=self.assistant_only_loss,
            )
        except ValueError as err:
            # Processors raise ValueError when placeholders and images disagree after template rendering.
            if "image" in str(err).lower():
                return drop("image_mismatch", str(err))
            raise
        input_ids = torch.as_tensor(encoded["input_ids"]).reshape(-1)
        labels = input_ids.clone()
        if self.assistant_only_loss:
            mask = torch.as_tensor(encoded["assistant_masks"]).reshape(-1)
            labels[mask == 0] = -100
        if self.image_token_id is not None:
            labels[input_ids == self.image_token_id] = -100
        labels[0] = -100  # nothing predicts a sample's first token
        out["length"] = int(input_ids.numel())
        if out["length"] > self.max_length:
            return drop("too_long", f"{out['length']} tokens > max_length={self.max_length}")
        if not bool((labels != -100).any()):
            return drop("empty_assistant", "no token left to train on after masking")
        out["input_ids"] = input_ids.tolist()
        out["labels"] = labels.tolist()
        return out


def encode_dataset(dataset, encoder: SampleEncoder, *, strict: bool = False, num_proc: int | None = None,
                   id_column: str = "id"):
    """Encode a `datasets.Dataset` with `encoder`; return `(kept, DropReport)`.

    `kept` has `input_ids`, `labels`, `num_images`, `length`, the (undecoded) `images` column for the collator, the
    original row index as `source_index` and the sample's id (its `id_column`, else the row index) as `sample_id`.
    `num_proc` encodes in that many processes (`dataset_num_proc`); the result is cached (see the module docstring).
    With `strict=True` the first bad sample raises a `ValueError` naming it.
    """
    if "messages" not in dataset.column_names:
        raise ValueError(
            f"Packed vision-language training needs a conversational `messages` column (TRL's vision format); "
            f"the dataset has {dataset.column_names}. Convert it with the `infimed.data` converters first."
        )
    if "image" in dataset.column_names and "images" not in dataset.column_names:
        dataset = dataset.map(lambda ex: {"images": [ex["image"]] if ex["image"] is not None else []},
                              remove_columns=["image"])
    # Decoding corrupt bytes inside `datasets` would raise while iterating; keep raw `{bytes, path}` dicts instead
    # and let `load_image` validate (and name) each one.
    dataset = undecoded_images(dataset, columns=["images"])
    keep_columns = {"images"}
    # The cache key: this dataset's fingerprint (its files and every transform so far) and the encoder's settings.
    # `datasets` writes `cache-<fingerprint>.arrow` next to the dataset's own cache files and reuses it in any later
    # process; in-memory datasets (no cache files) are encoded each time, as `datasets` does for them.
    fingerprint = Hasher.hash([dataset._fingerprint, encoder.fingerprint()])
    encoded = dataset.map(
        encoder,
        with_indices=False,
        remove_columns=[c for c in dataset.column_names if c not in keep_columns],
        num_proc=num_proc,
        new_fingerprint=fingerprint,
        desc="Encoding samples for packing",
    )
    if encoded.cache_files:
        logger.info("Encoded samples cached in %s", encoded.cache_files[0]["filename"])
    reasons = encoded["drop_reason"]
    report = DropReport(total=len(encoded))
    ids = dataset[id_column] if id_column in dataset.column_names else [str(i) for i in range(len(dataset))]
    for i, reason in enumerate(reasons):
        if not reason:
            continue
        if strict:
            raise ValueError(
                f"Sample {ids[i]!r} (row {i}) is invalid: {reason} ({encoded[i]['drop_detail']}). Fix or remove "
                f"it, or set `strict_data=False` to skip bad samples and count them in the run summary."
            )
        report.add(reason, str(ids[i]))
    keep = [i for i, r in enumerate(reasons) if not r]
    report.kept = len(keep)
    if report.dropped:
        logger.warning("Dropped %d of %d samples before packing: %s", report.dropped, report.total,
                       dict(Counter({k: v for k, v in report.counts.items()})))
    kept = encoded.select(keep).remove_columns(["drop_reason", "drop_detail"])
    kept = kept.add_column("source_index", keep)
    # Names the collator uses when it skips a sample whose image turns out corrupt during training.
    kept = kept.add_column("sample_id", [str(ids[i]) for i in keep])
    return kept, report
