"""Collate packed rows of tokenized multimodal samples into one padding-free batch.

A row holds several samples back to back. Attention stays inside each sample because `position_ids` restart at 0
where a sample starts and the batch carries no `attention_mask`: transformers then builds a block-diagonal causal
mask from the positions (sdpa/eager/flex; flash-attention varlen splits at position 0 when the batch is one row).

    row:            [ A A A A | B B B | C C | pad pad ]
    position_ids:   [ 0 1 2 3 | 0 1 2 | 0 1 | 0   1   ]
    labels:         [ - a a a | - b b | - c | -   -   ]   "-" = -100: each sample's first token, prompts, pads
    attention (x = may attend):
                      A A A A B B B C C p p
                    A x
                    A x x
                    A x x x
                    A x x x x
                    B         x
                    B         x x
                    B         x x x
                    C               x
                    C               x x
                    p                   x
                    p                   x x

The first label of each sample is masked because a causal LM's loss scores token t+1 from token t: without the mask
the last token of A would be trained to predict the first token of B, which it cannot see. With it, the packed loss
is exactly the token-weighted loss of the samples run one by one.

Images are decoded here, in the DataLoader workers (the encoder only counted them). A sample whose image cannot be
decoded is dropped from its row (the rest of the row trains) and named in the batch's packing stats under "skipped"
(`{reason: [sample ids]}`), which `InfiMedSFTTrainer` pops, logs and adds to the stage summary. A batch left with no
sample is one pad token with no label; the trainer runs it as a zero-loss step (docs/data-loading.md).

Images of all samples are processed in one call in row-major placeholder order (row 0's samples, then row 1's...),
which is the order the model scatters image features into image-token positions.

M-RoPE models (Qwen2-VL / Qwen2.5-VL) take `position_ids` of shape (4, B, S): row 0 the text positions (used only to
find the sample boundaries) and rows 1-3 the temporal/height/width rope positions, computed per sample with the
model's own `get_rope_index` and concatenated along the row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch

from infimed.processing.image_io import load_image

__all__ = ["DataCollatorForPackedVisionLanguageModeling", "PACKING_STATS_KEY", "SKIP_REASON_BAD_IMAGE"]

logger = logging.getLogger(__name__)

# Batch key holding packing figures for logging; the trainer pops it before the forward.
PACKING_STATS_KEY = "packing_stats"
# Why the collator skips a sample: its image exists but cannot be decoded (truncated, corrupt, unsupported).
SKIP_REASON_BAD_IMAGE = "bad_image"


def _load(image):
    # PIL images (already decoded) pass through; anything else (paths, bytes, `datasets` Image dicts, DICOM) goes
    # through the package's single image loader.
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image

    return load_image(image)


@dataclass
class DataCollatorForPackedVisionLanguageModeling:
    """Turn a list of packed rows into `input_ids`, `labels`, `position_ids` (no `attention_mask`) and image tensors.

    Each row is a list of samples; each sample a dict with `input_ids` (list[int]), `labels` (list[int], -100 where
    no loss) and `images` (list of images in placeholder order; PIL or anything `load_image` reads).

    Args:
        image_processor: callable `(images=list[PIL], return_tensors="pt") -> dict` (e.g. `processor.image_processor`).
        pad_token_id: fills the tail of rows shorter than the longest row in the batch.
        image_token_id: the image placeholder token; needed for M-RoPE.
        rope_index_fn: the model's `get_rope_index` for M-RoPE models (Qwen2-VL family), else `None`.
        pad_to_multiple_of: pad the row length up to a multiple of this (tensor-core friendly shapes).
        flatten: concatenate the batch's rows into one row of shape (1, total): flash-attention varlen splits
            samples only at `position_ids == 0` inside a single row, and this also removes the pad tail.
        max_length: the packer's token budget per row; only for the `budget_slots` figure in the packing stats.
        strict: raise on a sample whose image will not decode instead of skipping it (`strict_data`).
    """

    image_processor: Callable[..., Any] | None
    pad_token_id: int
    image_token_id: int | None = None
    rope_index_fn: Callable[..., Any] | None = None
    pad_to_multiple_of: int | None = None
    flatten: bool = False
    max_length: int | None = None
    strict: bool = False
    return_tensors: str = "pt"

    def __call__(self, rows: list[list[dict[str, Any]]]) -> dict[str, Any]:
        if rows and isinstance(rows[0], dict):
            rows = [row["samples"] for row in rows]
        rows, skipped = self._decode_images(rows)
        if not any(rows):
            # Every sample was bad: one pad token, no label (the trainer takes a zero-loss step on it).
            rows = [[{"input_ids": [self.pad_token_id], "labels": [-100], "images": [], "source_index": None,
                      "placeholder": True}]]
        if self.flatten:
            rows = [[sample for row in rows for sample in row]]
        lengths = [sum(len(s["input_ids"]) for s in row) for row in rows]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch_size = len(rows)
        input_ids = torch.full((batch_size, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch_size, width), -100, dtype=torch.long)
        position_ids = torch.zeros((batch_size, width), dtype=torch.long)

        images = [image for row in rows for sample in row for image in sample.get("images") or []]
        image_inputs: dict[str, torch.Tensor] = {}
        if images:
            if self.image_processor is None:
                raise ValueError("The batch holds images but the collator was built without an `image_processor`.")
            image_inputs = dict(self.image_processor(images=images, return_tensors="pt"))

        mrope = self.rope_index_fn is not None
        if mrope:
            if self.image_token_id is None:
                raise ValueError("M-RoPE positions need `image_token_id` to find each sample's image tokens.")
            rope_positions = torch.zeros((3, batch_size, width), dtype=torch.long)
            grids = image_inputs.get("image_grid_thw")
            image_cursor = 0

        for b, row in enumerate(rows):
            start = 0
            for sample in row:
                ids = torch.as_tensor(sample["input_ids"], dtype=torch.long)
                n = ids.numel()
                input_ids[b, start : start + n] = ids
                labels[b, start : start + n] = torch.as_tensor(sample["labels"], dtype=torch.long)
                labels[b, start] = -100  # the previous sample's last token must not learn this one's first
                position_ids[b, start : start + n] = torch.arange(n)
                if mrope:
                    k = len(sample.get("images") or [])
                    sample_grid = grids[image_cursor : image_cursor + k] if k else None
                    image_cursor += k
                    # (3, 1, n) from the model's own rule; each sample starts again at position 0
                    pos, _ = self.rope_index_fn(
                        input_ids=ids[None],
                        mm_token_type_ids=(ids == self.image_token_id).int()[None],
                        image_grid_thw=sample_grid,
                    )
                    rope_positions[:, b, start : start + n] = pos[:, 0]
                start += n
            # The pad tail is one more "sample" of its own: positions restart so no real token attends to it.
            position_ids[b, start:] = torch.arange(width - start)
            if mrope:
                rope_positions[:, b, start:] = torch.arange(width - start)

        batch: dict[str, Any] = {"input_ids": input_ids, "labels": labels}
        # (4, B, S): text positions first, then the three rope rows, as Qwen2.5-VL's language model expects
        batch["position_ids"] = torch.cat([position_ids[None], rope_positions], dim=0) if mrope else position_ids
        batch.update(image_inputs)
        batch[PACKING_STATS_KEY] = {
            "real_tokens": int(sum(lengths)),
            "slots": int(batch_size * width),
            # slots of the packing budget: the fill figure that does not depend on how the batch was padded
            "budget_slots": int(len(rows) * self.max_length) if self.max_length and not self.flatten else None,
            "images": len(images),
            "rows": batch_size,
            "samples": int(sum(1 for row in rows for sample in row if not sample.get("placeholder"))),
            "source_indices": [sample.get("source_index") for row in rows for sample in row
                               if not sample.get("placeholder")],
            "skipped": skipped,
        }
        return batch

    def _decode_images(self, rows):
        """Rows with every sample's images decoded (PIL RGB), less the samples whose images fail to decode, and
        those samples' ids by reason."""
        skipped: dict[str, list[str]] = {}
        decoded_rows = []
        for row in rows:
            kept = []
            for sample in row:
                try:
                    images = [_load(image) for image in sample.get("images") or []]
                except Exception as err:  # ImageLoadError, and whatever a broken file throws from deeper in PIL
                    name = str(sample.get("sample_id", sample.get("source_index")))
                    if self.strict:
                        raise ValueError(
                            f"Sample {name!r} is invalid: {SKIP_REASON_BAD_IMAGE} ({err}). Fix or remove it, or set "
                            "`strict_data=False` to skip bad samples and count them in the run summary."
                        ) from err
                    skipped.setdefault(SKIP_REASON_BAD_IMAGE, []).append(name)
                    logger.warning("Skipping sample %s: %s", name, err)
                    continue
                kept.append({**sample, "images": images})
            decoded_rows.append(kept)
        return [row for row in decoded_rows if row], skipped
