"""Packing of multimodal samples into rows under two budgets: tokens and images per row.

A sample is never split: its image tokens stay with its text, so a row never holds half an image. Samples longer
than the token budget (or with more images than the image budget) cannot be placed and are returned separately, so
the caller can count or refuse them.

    lengths     = [7, 3, 5, 2, 6]          tokens per sample (image tokens counted at the stage's num_image_tokens)
    num_images  = [1, 0, 2, 0, 1]
    budget      = PackingBudget(max_tokens=10, max_images=2)

    pack_best_fit_decreasing(lengths, num_images, budget)
    -> rows [[0, 1], [4, 3], [2]]           7+3, 6+2 (+5 would exceed 10 tokens), 5 with 2 images
                                            (the rows come back in a seeded shuffled order)

Each row is opened by the longest sample left, then filled with the subset of the waiting samples whose lengths
sum closest to the room left (a subset-sum over a bitset of reachable sums, longest lengths tried first, stopped at
an exact fill or after a bounded number of steps), then topped up largest first. Samples whose images exceed the
row's image room are passed over. Plain best-fit-decreasing (`pack_plain_best_fit_decreasing`, kept as the baseline)
places samples one at a time and leaves most rows with a room just under the shortest sample: on the benchmark pool
(docs/packing.md) it fills 0.975 of 768-token rows where the subset fill reaches 0.994 (the bound is 0.998).
Ties between equal lengths are broken by a permutation drawn from `seed`, so the rows are a pure function of
(lengths, num_images, budget, seed).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import Sequence

__all__ = ["PackingBudget", "PackingResult", "pack_best_fit_decreasing", "pack_plain_best_fit_decreasing"]

# Bitset steps of one row's subset search (a step is one shift-or over `max_tokens` bits). 64 measured: on the
# benchmark pool at 768 tokens, 0.994 filled (an uncapped search: 0.996); on 100,000 samples of uniform lengths
# 1-4000 at 8192 tokens, 3 s (128 steps: 8 s). See docs/packing.md.
_MAX_SUBSET_STEPS = 64
# Samples of one length looked at when the row's image room refuses some (bounds the cost under an image budget).
_IMAGE_SCAN = 32


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


def _screen(lengths, num_images, budget: PackingBudget):
    """The samples a row can hold, in a `PackingResult` that already lists the ones it cannot."""
    n = len(lengths)
    if num_images is None:
        num_images = [0] * n
    if len(num_images) != n:
        raise ValueError(f"`lengths` ({n}) and `num_images` ({len(num_images)}) must have the same length.")
    lengths, num_images = [int(x) for x in lengths], [int(x) for x in num_images]
    result = PackingResult(rows=[], max_tokens=budget.max_tokens)
    placeable = []
    for i in range(n):
        if lengths[i] > budget.max_tokens or lengths[i] < 1:
            result.too_long.append(i)
        elif budget.max_images is not None and num_images[i] > budget.max_images:
            result.too_many_images.append(i)
        else:
            placeable.append(i)
            result.num_tokens += lengths[i]
            result.num_images += num_images[i]
    return lengths, num_images, placeable, result


def _decreasing(placeable: list[int], lengths: list[int], rng: random.Random) -> list[int]:
    """Longest first; equal lengths in an order drawn from `rng`."""
    tiebreak = list(range(len(lengths)))
    rng.shuffle(tiebreak)
    return sorted(placeable, key=lambda i: (-lengths[i], tiebreak[i]))


def pack_best_fit_decreasing(
    lengths: Sequence[int], num_images: Sequence[int] | None, budget: PackingBudget, seed: int = 0
) -> PackingResult:
    """Pack samples into rows under `budget`: the longest sample left, then the best-filling subset; seeded.

    Args:
        lengths: tokens per sample, image tokens included.
        num_images: images per sample (`None`: all text-only).
        budget: the per-row token and image budgets.
        seed: breaks ties between samples of equal length, and orders the returned rows.

    Returns:
        A `PackingResult` whose `rows` hold sample indices (each row in placement order) in a seeded shuffled order,
        so consecutive rows do not all hold the longest samples.
    """
    lengths, num_images, placeable, result = _screen(lengths, num_images, budget)
    rng = random.Random(seed)
    waiting = _Waiting(_decreasing(placeable, lengths, rng), lengths, num_images)
    while waiting.available:
        row = _Row(budget.max_tokens, budget.max_images)
        # The longest sample left opens the row: no later row could hold it with more room.
        waiting.take(row, waiting.available[-1], 1)
        wanted = _best_subset(row.room, waiting)
        for length in sorted(wanted, reverse=True):
            waiting.take(row, length, wanted[length])
        # Top up what the subset search left (its step cap, or samples refused for their images), largest first.
        pos = bisect.bisect_right(waiting.available, row.room) - 1
        while pos >= 0 and (row.image_room != 0 or waiting.text_only):
            length = waiting.available[pos]
            waiting.take(row, length, row.room // length)
            pos = min(pos - 1, bisect.bisect_right(waiting.available, row.room) - 1)
        result.rows.append(row.samples)
    rng.shuffle(result.rows)
    return result


@dataclass
class _Row:
    room: int  # token slots left
    image_room: int | None  # images left; None: no image budget
    samples: list[int] = field(default_factory=list)


class _Waiting:
    """The samples not yet placed, by length; each length's list ends with the sample to take first."""

    def __init__(self, order: list[int], lengths: list[int], num_images: list[int]):
        self.lengths, self.num_images = lengths, num_images
        self.queues: dict[int, list[int]] = {}
        for i in reversed(order):
            self.queues.setdefault(lengths[i], []).append(i)
        self.available = sorted(self.queues)  # distinct lengths still waiting, ascending
        self.text_only = sum(1 for i in order if num_images[i] == 0)

    def count(self, length: int) -> int:
        return len(self.queues[length])

    def take(self, row: _Row, length: int, count: int) -> None:
        """Move up to `count` samples of `length` into `row`, skipping those over the row's image room.

        Only the next `_IMAGE_SCAN` samples of a length are looked at, which bounds a row's cost when most waiting
        samples carry more images than the row has room for.
        """
        queue = self.queues[length]
        pos, stop = len(queue) - 1, max(len(queue) - _IMAGE_SCAN, 0)
        while count and pos >= stop and row.room >= length:
            images = self.num_images[queue[pos]]
            if row.image_room is None or images <= row.image_room:
                row.samples.append(queue.pop(pos))
                row.room -= length
                count -= 1
                self.text_only -= images == 0
                if row.image_room is not None:
                    row.image_room -= images
            pos -= 1
        if not queue:
            del self.queues[length]
            self.available.pop(bisect.bisect_left(self.available, length))


def _best_subset(room: int, waiting: _Waiting) -> dict[int, int]:
    """How many samples of each waiting length fill `room` best (tokens only): a subset-sum over a bitset.

    Bit s of `reachable` is set when some choice of waiting samples sums to s tokens. Lengths are tried longest
    first, each in binary pieces (1, 2, 4, ... samples) so a length shared by many samples costs a few steps; the
    search stops at an exact fill or after `_MAX_SUBSET_STEPS` steps (the caller then tops up, largest first).
    """
    reachable, mask = 1, (1 << (room + 1)) - 1
    steps: list[tuple[int, int, int]] = []  # (length, samples, reachable before this step)
    for pos in range(bisect.bisect_right(waiting.available, room) - 1, -1, -1):
        length = waiting.available[pos]
        left, piece = min(waiting.count(length), room // length), 1
        while left and len(steps) < _MAX_SUBSET_STEPS and not reachable >> room & 1:
            take = min(piece, left)
            steps.append((length, take, reachable))
            reachable = (reachable | reachable << (length * take)) & mask
            left, piece = left - take, piece * 2
        if len(steps) >= _MAX_SUBSET_STEPS or reachable >> room & 1:
            break
    # Walk back from the best reachable sum: a step whose earlier bitset already reached that sum was not needed.
    total, wanted = reachable.bit_length() - 1, {}
    for length, take, before in reversed(steps):
        if not before >> total & 1:
            wanted[length] = wanted.get(length, 0) + take
            total -= length * take
    return wanted


def pack_plain_best_fit_decreasing(
    lengths: Sequence[int], num_images: Sequence[int] | None, budget: PackingBudget, seed: int = 0
) -> PackingResult:
    """Plain best-fit-decreasing, the baseline `pack_best_fit_decreasing` improves on (same arguments and result).

    Each sample, longest first, goes to the open row whose token room is the smallest that still fits it (and
    whose image room fits its images); a new row opens when none does.
    """
    lengths, num_images, placeable, result = _screen(lengths, num_images, budget)
    rng = random.Random(seed)
    row_room: list[int] = []  # remaining token room per row
    row_images: list[int] = []  # images already in each row
    # Open rows sorted by (room, row id): bisect finds the tightest row that still fits a sample in O(log rows).
    open_rows: list[tuple[int, int]] = []
    for i in _decreasing(placeable, lengths, rng):
        length, images = lengths[i], num_images[i]
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
        # A row with no token room left is closed, which keeps the search list short.
        if row_room[chosen] > 0:
            bisect.insort(open_rows, (row_room[chosen], chosen))
    rng.shuffle(result.rows)
    return result
