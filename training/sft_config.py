"""`InfiMedSFTConfig`: TRL's `SFTConfig` plus the knobs of multimodal packing."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from .streaming import DEFAULT_BUFFER_SIZE

__all__ = ["InfiMedSFTConfig"]


@dataclass
class InfiMedSFTConfig(SFTConfig):
    r"""
    Configuration for [`InfiMedSFTTrainer`]: every [`~trl.SFTConfig`] field, with packing on by default, plus:

    Parameters:
        > Multimodal packing

        max_images_per_row (`int` or `None`, *optional*, defaults to `None`):
            Image budget of a packed row, next to the token budget `max_length`; bounds the vision tower's activation
            memory per row. `None` leaves only the token budget (which already caps images at
            `max_length // num_image_tokens`).
        packing_seed (`int` or `None`, *optional*, defaults to `None`):
            Seed of the packing tie-breaks and row order; `None` uses `seed`. Same seed, same rows, also after
            `--resume`.
        packing_buffer_size (`int`, *optional*, defaults to `1000`):
            Streamed sources only (`streaming: true`): samples buffered for best-fit packing. Larger fills rows
            better and costs memory (token ids only) and a longer first fill; see docs/streaming.md.
        strict_data (`bool`, *optional*, defaults to `False`):
            Raise on the first bad sample (missing/corrupt image, placeholder/image mismatch, empty assistant turn,
            longer than `max_length`) instead of skipping it and counting it by reason.
    """

    # Packing is the point of this trainer: on medical VQA most of a padded batch is padding (short answers next to
    # long reports), see benchmarks/packing.py.
    packing: bool = field(default=True, metadata={"help": "Pack several samples per row (multimodal-aware)."})
    max_images_per_row: int | None = field(
        default=None,
        metadata={"help": "Image budget per packed row (bounds vision-tower memory); None: token budget only."},
    )
    packing_seed: int | None = field(
        default=None, metadata={"help": "Seed of packing tie-breaks and row order; None uses `seed`."}
    )
    packing_buffer_size: int = field(
        default=DEFAULT_BUFFER_SIZE,
        metadata={"help": "Streamed sources: samples buffered for best-fit packing (docs/streaming.md)."},
    )
    strict_data: bool = field(
        default=False,
        metadata={"help": "Raise on the first bad sample instead of skipping and counting it by reason."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.max_images_per_row is not None and self.max_images_per_row < 1:
            raise ValueError(
                f"`max_images_per_row` must be a positive integer or None, got {self.max_images_per_row}."
            )
        if self.packing_buffer_size < 1:
            raise ValueError(f"`packing_buffer_size` must be a positive integer, got {self.packing_buffer_size}.")
        if self.packing and self.max_length is None:
            raise ValueError("Packing needs a token budget: set `max_length` (tokens per packed row).")
