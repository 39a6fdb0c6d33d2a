"""Seeded mixing of several datasets into one training-stage dataset, by rows or by tokens, never silently.

InfiMed-Foundation's SFT-3 stage is "sampled general 18K + sampled medical 124K" (rows); its continual pretraining
mixes 25B general : 5B medical-caption *tokens*. A stage names its sources and how much of each it wants:

| a source sets   | it gets                                                                                        |
|-----------------|------------------------------------------------------------------------------------------------|
| `count`         | exactly that many rows                                                                         |
| `weight`        | a share of the rows left after the counted sources (proportions of `total`)                    |
| `tokens`        | rows adding up to that many tokens (needs per-row `lengths`)                                   |
| `token_weight`  | a share of the tokens left after the fixed sources (proportions of `total_tokens`)             |
| none of them    | every row                                                                                      |

    from infimed.data.mixing import MixSource, mix_sources
    mixed, report = mix_sources([MixSource(general, "general", token_weight=5, lengths=general_lengths),
                                 MixSource(captions, "captions", token_weight=1, lengths=caption_lengths)], seed=42)
    report["sources"]["captions"]  # requested/available/taken rows and tokens, unused, repeated, token_share, ...

A row's token length (`lengths`) is computed by the caller (text tokens + images x visual tokens per image, see
`infimed.training.stages.load_stage_datasets`), so this module needs no tokenizer and decodes no image.

Rows are drawn without replacement. A request a source cannot meet (more rows or tokens than it holds) raises
`ValueError` naming the source, unless the source sets `allow_repeat` (whole repeats, then a draw without
replacement; warned) or `allow_shortfall` (every row, the shortfall reported and warned). Rows a ratio leaves unused
(1000 general + 500 caption rows at 5:1 keep 200 captions) are counted per source in the report and logged. The
result is shuffled with ``seed``; the same seed and inputs give the same rows in the same order.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MixSource", "mix_sources", "allocate_counts"]

logger = logging.getLogger(__name__)

_AMOUNTS = ("weight", "count", "token_weight", "tokens")


@dataclass
class MixSource:
    """One input of a mix.

    Attributes:
        dataset: a ``datasets.Dataset`` (map-style; rows are selected by index).
        name: label used in the report and written to the ``source`` column when the dataset has none.
        weight: share of the row-weighted part of the mix (any positive scale; normalised over weighted sources).
        count: exact number of rows to take.
        token_weight: share of the token-weighted part of the mix (normalised over token-weighted sources).
        tokens: number of tokens to take (rows are added until the sum is nearest to it).
        lengths: tokens of each row, in dataset order; needed by `tokens`/`token_weight`, and fills the token
            columns of the report for any source.
        allow_repeat: a request larger than the source repeats rows instead of raising.
        allow_shortfall: a request larger than the source takes every row (the shortfall is reported) instead of
            raising.

    At most one of ``weight`` / ``count`` / ``token_weight`` / ``tokens``; none means "all rows".
    """

    dataset: object
    name: str
    weight: float | None = None
    count: int | None = None
    token_weight: float | None = None
    tokens: int | None = None
    lengths: Sequence[int] | None = None
    allow_repeat: bool = False
    allow_shortfall: bool = False

    def __post_init__(self):
        given = [key for key in _AMOUNTS if getattr(self, key) is not None]
        if len(given) > 1:
            raise ValueError(f"Mix source {self.name!r} sets both {' and '.join(f'`{k}`' for k in given)}; keep one.")
        for key in ("weight", "token_weight"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"Mix source {self.name!r}: `{key}` must be a positive number, got {value!r}.")
        for key in ("count", "tokens"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"Mix source {self.name!r}: `{key}` must be an integer >= 0, got {value!r}.")
        if self.allow_repeat and self.allow_shortfall:
            raise ValueError(f"Mix source {self.name!r} sets both `allow_repeat` and `allow_shortfall`; a source "
                             "that is too small either repeats rows or is taken whole, so keep one.")
        if self.by_tokens and self.lengths is None:
            raise ValueError(f"Mix source {self.name!r} asks for tokens (`{self.mode}`) but has no per-row `lengths`.")

    @property
    def mode(self) -> str:
        return next((key for key in _AMOUNTS if getattr(self, key) is not None), "all")

    @property
    def by_tokens(self) -> bool:
        return self.mode in ("tokens", "token_weight")


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


def _too_small(s: MixSource, wanted: str, available: str) -> ValueError:
    fix = {"count": "lower `count`", "tokens": "lower `tokens`", "all": "", "weight": "lower `total` or its `weight`",
           "token_weight": "lower the token total or its `token_weight`"}[s.mode]
    return ValueError(
        f"Mix source {s.name!r}: {wanted} requested but it holds only {available}. Set `allow_repeat: true` on it to "
        f"repeat rows, or `allow_shortfall: true` to take what it has{f', or {fix}' if fix else ''}."
    )


def _draw_rows(s: MixSource, n_wanted: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_wanted`` rows: whole repeats (when allowed), then a draw without replacement."""
    n_available = len(s.dataset)
    if n_wanted and not n_available and not s.allow_shortfall:
        raise ValueError(f"Mix source {s.name!r} is empty but {n_wanted} rows were requested from it.")
    if n_wanted > n_available:
        if not (s.allow_repeat or s.allow_shortfall):
            raise _too_small(s, f"{n_wanted} rows", f"{n_available}")
        if s.allow_shortfall:
            n_wanted = n_available
    repeats, remainder = divmod(n_wanted, n_available) if n_available else (0, 0)
    parts = [np.arange(n_available)] * repeats + [rng.choice(n_available, size=remainder, replace=False)]
    return np.concatenate(parts).astype(np.int64)


def _draw_tokens(s: MixSource, lengths: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of rows whose lengths sum nearest to ``budget``: shuffled rows taken in order until it is reached."""
    held = int(lengths.sum())
    if budget and not held and not s.allow_shortfall:
        raise ValueError(f"Mix source {s.name!r} holds no tokens but {budget} tokens were requested from it.")
    if budget > held and not (s.allow_repeat or s.allow_shortfall):
        raise _too_small(s, f"{budget} tokens", f"{held} tokens ({len(lengths)} rows)")
    if budget >= held and not s.allow_repeat:
        return np.arange(len(lengths), dtype=np.int64)
    repeats, rest = divmod(budget, held) if held else (0, 0)
    order = rng.permutation(len(lengths))
    cumulative = np.cumsum(lengths[order])
    k = int(np.searchsorted(cumulative, rest))  # first row at which the running sum reaches `rest`
    before = int(cumulative[k - 1]) if k else 0
    # stop at row k or one row earlier, whichever sum lands nearer the budget
    taken = k if k == len(order) or rest - before <= cumulative[k] - rest else k + 1
    return np.concatenate([np.arange(len(lengths))] * repeats + [order[:taken]]).astype(np.int64)


def _check_inputs(sources: list[MixSource]) -> None:
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
        if s.lengths is not None and len(s.lengths) != len(s.dataset):
            raise ValueError(f"Mix source {s.name!r}: {len(s.lengths)} `lengths` for {len(s.dataset)} rows.")
    modes = {s.mode for s in sources}
    if {"weight", "token_weight"} <= modes:
        raise ValueError("A mix cannot weigh some sources by rows (`weight`) and others by tokens (`token_weight`): "
                         "their shares would be of different totals. Use one kind of weight (or `count`/`tokens`).")


def _tokens(lengths: np.ndarray | None, indices: np.ndarray) -> int | None:
    return None if lengths is None else int(lengths[indices].sum())


def mix_sources(sources: list[MixSource], seed: int, total: int | None = None, total_tokens: int | None = None):
    """Mix ``sources`` into one shuffled ``datasets.Dataset`` and report what was asked of and taken from each.

    Args:
        sources: the inputs; names must be unique.
        seed: seeds every draw and the final shuffle.
        total: rows of the whole mix. Counted, whole and token-budget sources are taken first; `weight` sources
            share the rest. Without it, `weight` sources get the largest share that needs no row twice.
        total_tokens: tokens of the whole mix; `token_weight` sources share what the other sources leave. Without
            it, they get the largest share that needs no row twice.

    Returns:
        ``(dataset, report)``: ``report = {"seed", "total", "total_tokens", "sources": {name: {...}}}`` with, per
        source, its `mode`, `requested`/`available`/`taken` rows, `requested_tokens`/`available_tokens`/
        `taken_tokens` (None where unknown), `token_share`, `unused` (rows never drawn), `repeated` (draws beyond
        a row's first), `shortfall_rows`/`shortfall_tokens`, `with_replacement`, `weight`, `token_weight`.
    """
    import datasets

    _check_inputs(sources)
    lengths = {s.name: None if s.lengths is None else np.asarray(s.lengths, dtype=np.int64) for s in sources}
    # One generator per source (seed, position): adding a source does not change the rows drawn from the others.
    rngs = {s.name: np.random.default_rng([seed, index]) for index, s in enumerate(sources)}
    indices: dict[str, np.ndarray] = {}
    requested: dict[str, int | None] = {s.name: None for s in sources}
    requested_tokens: dict[str, int | None] = {s.name: None for s in sources}

    for s in sources:  # fixed amounts first: the weighted sources share what is left of the totals
        if s.mode in ("count", "all"):
            requested[s.name] = s.count if s.mode == "count" else len(s.dataset)
            indices[s.name] = _draw_rows(s, requested[s.name], rngs[s.name])
        elif s.mode == "tokens":
            requested_tokens[s.name] = s.tokens
            indices[s.name] = _draw_tokens(s, lengths[s.name], s.tokens, rngs[s.name])

    weighted = [s for s in sources if s.mode == "weight"]
    if weighted:
        fixed = sum(requested[n] if requested[n] is not None else len(i) for n, i in indices.items())
        if total is None:
            share = sum(s.weight for s in weighted)
            # Largest weighted part in which every weighted source is used at most once.
            weighted_total = min(math.floor(len(s.dataset) * share / s.weight) for s in weighted)
        else:
            if total < fixed:
                raise ValueError(f"`total`={total} is smaller than the rows asked for by count ({fixed}); raise "
                                 "`total` or lower the counts.")
            weighted_total = total - fixed
        for s, n in zip(weighted, allocate_counts([s.weight for s in weighted], weighted_total)):
            requested[s.name] = n
            indices[s.name] = _draw_rows(s, n, rngs[s.name])
    elif total is not None and total != sum(len(i) for i in indices.values()):
        warnings.warn(f"`total`={total} is ignored: no source has a `weight`.", stacklevel=2)

    token_weighted = [s for s in sources if s.mode == "token_weight"]
    if token_weighted:
        share = sum(s.token_weight for s in token_weighted)
        if total_tokens is None:
            part = min(int(lengths[s.name].sum()) * share / s.token_weight for s in token_weighted)
            budgets = [min(b, int(lengths[s.name].sum())) for s, b in  # float rounding never asks for a repeat
                       zip(token_weighted, allocate_counts([s.token_weight for s in token_weighted], math.floor(part)))]
        else:
            unknown = [n for n in indices if lengths[n] is None]
            if unknown:
                raise ValueError(f"`total_tokens` needs the tokens of every source, but {unknown} have no `lengths`.")
            fixed_tokens = sum(_tokens(lengths[n], i) for n, i in indices.items())
            if total_tokens < fixed_tokens:
                raise ValueError(f"`total_tokens`={total_tokens} is smaller than the tokens of the fixed sources "
                                 f"({fixed_tokens}); raise it or lower their `count`/`tokens`.")
            budgets = allocate_counts([s.token_weight for s in token_weighted], total_tokens - fixed_tokens)
        for s, budget in zip(token_weighted, budgets):
            requested_tokens[s.name] = budget
            indices[s.name] = _draw_tokens(s, lengths[s.name], budget, rngs[s.name])
    elif total_tokens is not None:
        warnings.warn(f"`total_tokens`={total_tokens} is ignored: no source has a `token_weight`.", stacklevel=2)

    report_sources = {}
    for s in sources:
        report_sources[s.name] = _source_report(s, indices[s.name], lengths[s.name], requested[s.name],
                                                requested_tokens[s.name])
    all_tokens = [r["taken_tokens"] for r in report_sources.values()]
    total_taken_tokens = None if None in all_tokens else sum(all_tokens)
    for r in report_sources.values():
        r["token_share"] = round(r["taken_tokens"] / total_taken_tokens, 6) if total_taken_tokens else None

    parts = []
    for s in sources:
        part = s.dataset.select(indices[s.name].tolist())
        if "source" not in part.column_names:
            part = part.add_column("source", [s.name] * len(part))
        parts.append(part)
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
    report = {"seed": seed, "total": len(mixed), "total_tokens": total_taken_tokens, "sources": report_sources}
    logger.info("mixed %d rows (%s tokens) from %d sources", len(mixed), total_taken_tokens, len(sources))
    return mixed, report


def _source_report(s: MixSource, indices: np.ndarray, lengths, requested: int | None, requested_tokens: int | None):
    """What was asked of ``s`` and what it gave; warns on repeats and shortfalls, logs unused rows."""
    available, taken = len(s.dataset), len(indices)
    distinct = len(np.unique(indices))
    available_tokens = None if lengths is None else int(lengths.sum())
    taken_tokens = _tokens(lengths, indices)
    shortfall_rows = max(0, requested - taken) if requested is not None else 0
    # Only a source allowed to fall short can end below its budget; the others met it or raised.
    short = s.allow_shortfall and requested_tokens is not None
    shortfall_tokens = max(0, requested_tokens - available_tokens) if short else 0
    if taken > distinct:
        warnings.warn(f"Mix source {s.name!r}: {requested if requested is not None else f'{requested_tokens} tokens'} "
                      f"requested but only {available} rows exist; rows are repeated ({taken / distinct:.2f}x, "
                      "`allow_repeat`).", stacklevel=3)
    if shortfall_rows or shortfall_tokens:
        wanted = f"{requested} rows" if shortfall_rows else f"{requested_tokens} tokens"
        warnings.warn(f"Mix source {s.name!r}: {wanted} requested, only {taken} rows ({taken_tokens} tokens) exist; "
                      "all of them are taken (`allow_shortfall`).", stacklevel=3)
    if available > distinct:
        # A ratio or a count leaves rows out: said here and in the report, never a quiet drop.
        log = logger.warning if s.mode in ("weight", "token_weight") else logger.info
        log("mix source %r: %d of %d rows unused (%s mode)", s.name, available - distinct, available, s.mode)
    return {
        "mode": s.mode,
        "requested": requested,
        "requested_tokens": requested_tokens,
        "available": available,
        "available_tokens": available_tokens,
        "taken": taken,
        "taken_tokens": taken_tokens,
        "unused": available - distinct,
        "repeated": taken - distinct,
        "shortfall_rows": shortfall_rows,
        "shortfall_tokens": shortfall_tokens,
        "with_replacement": taken > distinct,
        "weight": s.weight,
        "token_weight": s.token_weight,
    }
