"""Seeded mixing of several datasets into one training-stage dataset, by counts or by weights.

InfiMed-Foundation's SFT-3 stage is "sampled general 18K + sampled medical 124K": a stage names its sources and how
much of each it wants. A source asks either for a ``count`` (absolute number of rows) or a ``weight`` (a share of the
rows left after the counted sources, so weights are proportions of ``total``); a source with neither is taken whole.

    from infimed.data.mixing import MixSource, mix_sources
    mixed, report = mix_sources(
        [MixSource(general, "general", count=18_000), MixSource(medical, "medical", count=124_000)], seed=42
    )
    report["sources"]["general"]  # {"requested": 18000, "available": ..., "taken": 18000, "with_replacement": False}

Rows are drawn without replacement; asking for more rows than a source has repeats the whole source as often as
it fits and draws the remainder without replacement (a warning says so). The result is shuffled with ``seed``. The
same seed and inputs give the same rows in the same order.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["MixSource", "mix_sources", "allocate_counts"]

logger = logging.getLogger(__name__)


@dataclass
class MixSource:
    """One input of a mix.

    Attributes:
        dataset: a ``datasets.Dataset`` (map-style; rows are selected by index).
        name: label used in the report and written to the ``source`` column when the dataset has none.
        weight: share of the weighted part of the mix (any positive scale; normalised over weighted sources).
        count: exact number of rows to take. At most one of ``weight`` / ``count``; neither means "all rows".
    """

    dataset: object
    name: str
    weight: float | None = None
    count: int | None = None

    def __post_init__(self):
        if self.weight is not None and self.count is not None:
            raise ValueError(f"Mix source {self.name!r} sets both `weight` and `count`; keep one of them.")
        if self.weight is not None and not (isinstance(self.weight, (int, float)) and self.weight > 0):
            raise ValueError(f"Mix source {self.name!r}: `weight` must be a positive number, got {self.weight!r}.")
        bad_count = isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0
        if self.count is not None and bad_count:
            raise ValueError(f"Mix source {self.name!r}: `count` must be an integer >= 0, got {self.count!r}.")


def allocate_counts(weights: list[float], total: int) -> list[int]:
    """Split ``total`` rows by ``weights`` with the largest-remainder rule, so the parts always sum to ``total``.

    >>> allocate_counts([1, 1, 1], 10)
    [4, 3, 3]
    """
    norm = sum(weights)
    exact = [w / norm * total for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _draw(n_available: int, n_wanted: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_wanted`` rows out of ``n_available``: whole repeats, then a draw without replacement."""
    repeats, remainder = divmod(n_wanted, n_available)
    parts = [np.arange(n_available)] * repeats + [rng.choice(n_available, size=remainder, replace=False)]
    return np.concatenate(parts).astype(np.int64)


def mix_sources(sources: list[MixSource], seed: int, total: int | None = None):
    """Mix ``sources`` into one shuffled ``datasets.Dataset`` and report what was taken from each.

    Args:
        sources: the inputs; names must be unique.
        seed: seeds every draw and the final shuffle.
        total: size of the whole mix. Counted and whole sources are taken first; weighted sources share the rest.
            Without it, weighted sources get the largest share that needs no repetition of any weighted source.

    Returns:
        ``(dataset, report)`` with ``report = {"seed", "total", "sources": {name: {"requested", "available",
        "taken", "with_replacement", "weight"}}}``.
    """
    import datasets

    if not sources:
        raise ValueError("`sources` is empty: give at least one MixSource.")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"Mix source names must be unique, got {names}.")
    for s in sources:
        if not isinstance(s.dataset, datasets.Dataset):
            raise TypeError(
                f"Mix source {s.name!r} holds a {type(s.dataset).__name__}; pass a map-style `datasets.Dataset` "
                "(materialise an IterableDataset first, e.g. with `Dataset.from_generator`)."
            )

    requested: dict[str, int] = {}
    for s in sources:
        if s.count is not None:
            requested[s.name] = s.count
        elif s.weight is None:
            requested[s.name] = len(s.dataset)
    weighted = [s for s in sources if s.weight is not None]
    fixed = sum(requested.values())
    if weighted:
        if total is None:
            share = sum(s.weight for s in weighted)
            # Largest weighted part in which every weighted source is used at most once.
            weighted_total = min(math.floor(len(s.dataset) * share / s.weight) for s in weighted)
        else:
            if total < fixed:
                raise ValueError(
                    f"`total`={total} is smaller than the rows asked for by count ({fixed}); raise `total` or lower "
                    "the counts."
                )
            weighted_total = total - fixed
        for s, n in zip(weighted, allocate_counts([s.weight for s in weighted], weighted_total)):
            requested[s.name] = n
    elif total is not None and total != fixed:
        warnings.warn(f"`total`={total} is ignored: no source has a `weight`, the mix holds {fixed} rows.",
                      stacklevel=2)

    parts, report_sources = [], {}
    for index, s in enumerate(sources):
        n_available, n_wanted = len(s.dataset), requested[s.name]
        if n_wanted and not n_available:
            raise ValueError(f"Mix source {s.name!r} is empty but {n_wanted} rows were requested from it.")
        with_replacement = n_wanted > n_available
        if with_replacement:
            warnings.warn(
                f"Mix source {s.name!r}: {n_wanted} rows requested but only {n_available} exist; rows are repeated "
                f"({n_wanted / n_available:.2f}x).",
                stacklevel=2,
            )
        # One generator per source (seed, position): adding a source does not change the rows drawn from the others.
        rng = np.random.default_rng([seed, index])
        indices = _draw(n_available, n_wanted, rng) if n_wanted else np.zeros(0, dtype=np.int64)
        part = s.dataset.select(indices.tolist())
        if "source" not in part.column_names:
            part = part.add_column("source", [s.name] * len(part))
        parts.append(part)
        report_sources[s.name] = {
            "requested": n_wanted,
            "available": n_available,
            "taken": len(part),
            "with_replacement": with_replacement,
            "weight": s.weight,
        }

    features = parts[0].features
    for i in range(1, len(parts)):
        s, part = sources[i], parts[i]
        if part.features != features:
            try:
                parts[i] = part.cast(features)
            except (ValueError, TypeError, KeyError) as exc:
                only_here = sorted(set(part.column_names) ^ set(features))
                raise ValueError(
                    f"Mix source {s.name!r} has columns/features that do not match {sources[0].name!r} "
                    f"(differing columns: {only_here or 'same names, different types'}); convert both to the training "
                    f"format first (infimed.data.converters). Cast error: {exc}"
                ) from exc
    mixed = datasets.concatenate_datasets(parts).shuffle(seed=seed).flatten_indices()
    report = {"seed": seed, "total": len(mixed), "sources": report_sources}
    logger.info("mixed %d rows from %d sources", len(mixed), len(sources))
    return mixed, report
