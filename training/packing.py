"""Best-fit-decreasing packing of multimodal samples into rows under two budgets: tokens and images per row.

A sample is never split: its image tokens stay with its text, so a row never holds half an image. Samples longer
than the token budget (or with more images than the image budget) cannot be placed and are returned separately, so
the caller can count or refuse them.

    lengths     = [7, 3, 5, 2, 6]          tokens per sample (image tokens counted at the stage's num_image_tokens)
    num_images  = [1, 0, 2, 0, 1]
    budget      = PackingBudget(max_tokens=10, max_images=2)

    pack_best_fit_decreasing(lengths, num_images, budget)
    -> rows [[0, 1], [4, 3], [2]]           7+3, 6+2 (+5 would exceed 10 tokens), 5 with 2 images
                                            (the rows come back in a seeded shuffled order)

Best fit: each sample, longest first, goes to the open row whose remaining token room is the smallest that still
fits it (and whose image room fits its images); a new row opens when none does. Ties between equal lengths are
broken by a permutation drawn from `seed`, so the rows are a pure function of (lengths, num_images, budget, seed).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import Sequence

__all__ = ["PackingBudget", "PackingResult", "pack_best_fit_decreasing"]


@dataclass(frozen=True)
class PackingBudget:
    """The two per-row budgets of a packed batch row."""

    max_tokens: int = field(metadata={"help": "Token slots per row (the stage's `max_length`)."})
    max_images: int | None = field(
        default=None,
        metadata={"help": "Images per row; bounds the vision tower's activation memory. `None`: unbounded."},
    )

    def __post_init__(self):
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"`max_tokens` must be a positive integer, got {self.max_tokens!r}.")
        if self.max_images is not None and (not isinstance(self.max_images, int) or self.max_images < 1):
            raise ValueError(
                f"`max_images` must be a positive integer or None (no image budget), got {self.max_images!r}."
            )


@dataclass
class PackingResult:
    """Rows of sample indices, the samples that fit no row, and the packing figures."""

    rows: list[list[int]]
    too_long: list[int] = field(default_factory=list)
    too_many_images: list[int] = field(default_factory=list)
    num_tokens: int = 0
    num_images: int = 0
    max_tokens: int = 0

    @property
    def efficiency(self) -> float:
        """Real tokens / token slots (rows x max_tokens): 1.0 means no padding at all."""
        slots = len(self.rows) * self.max_tokens
        return self.num_tokens / slots if slots else 0.0

    @property
    def images_per_row(self) -> float:
        return self.num_images / len(self.rows) if self.rows else 0.0

    @property
    def samples_per_row(self) -> float:
        return sum(len(r) for r in self.rows) / len(self.rows) if self.rows else 0.0

    def summary(self) -> dict:
        return {
            "rows": len(self.rows),
            "samples": sum(len(r) for r in self.rows),
            "tokens": self.num_tokens,
            "packing_efficiency": round(self.efficiency, 6),
            "images_per_row": round(self.images_per_row, 4),
            "samples_per_row": round(self.samples_per_row, 4),
        }


def pack_best_fit_decreasing(
    lengths: Sequence[int], num_images: Sequence[int] | None, budget: PackingBudget, seed: int = 0
) -> PackingResult:
    """Pack samples into rows with best-fit-decreasing under `budget`; deterministic for a `seed`.

    Args:
        lengths: tokens per sample, image tokens included.
        num_images: images per sample (`None`: all text-only).
        budget: the per-row token and image budgets.
        seed: breaks ties between samples of equal length, and orders the returned rows.

    Returns:
        A `PackingResult` whose `rows` hold sample indices (each row in placement order) in a seeded shuffled order,
        so consecutive rows do not all hold the longest samples.
    """
    n = len(lengths)
    if num_images is None:
        num_images = [0] * n
    if len(num_images) != n:
        raise ValueError(f"`lengths` ({n}) and `num_images` ({len(num_images)}) must have the same length.")
    rng = random.Random(seed)
    tiebreak = list(range(n))
    rng.shuffle(tiebreak)
    order = sorted(range(n), key=lambda i: (-lengths[i], tiebreak[i]))

    result = PackingResult(rows=[], max_tokens=budget.max_tokens)
    row_room: list[int] = []  # remaining token room per row
    row_images: list[int] = []  # images already in each row
    # Open rows sorted by (room, row id): bisect finds the tightest row that still fits a sample in O(log rows).
    open_rows: list[tuple[int, int]] = []
    for i in order:
        length, images = int(lengths[i]), int(num_images[i])
        if length > budget.max_tokens or length < 1:
            result.too_long.append(i)
            continue
        if budget.max_images is not None and images > budget.max_images:
            result.too_many_images.append(i)
            continue
        pos = bisect.bisect_left(open_rows, (length, -1))
        chosen = None
        # The tightest row may be out of image room; walk to looser rows until one also fits the images.
        while pos < len(open_rows):
            room, row = open_rows[pos]
            if budget.max_images is None or row_images[row] + images <= budget.max_images:
                chosen = row
                del open_rows[pos]
                break
            pos += 1
        if chosen is None:
            chosen = len(result.rows)
            result.rows.append([])
            row_room.append(budget.max_tokens)
            row_images.append(0)
        result.rows[chosen].append(i)
        row_room[chosen] -= length
        row_images[chosen] += images
        result.num_tokens += length
        result.num_images += images
        # A row with no token room left is closed, which keeps the search list short.
        if row_room[chosen] > 0:
            bisect.insort(open_rows, (row_room[chosen], chosen))
    rng.shuffle(result.rows)
    return result
