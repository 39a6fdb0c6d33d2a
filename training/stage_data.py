"""A stage's data: load each source, select rows (`where:`), keep the training columns, count tokens, mix.

Token counts come from the rendered chat text and the number of images, with no image decoding
(`sample_token_lengths`), so a stage can mix its sources by token share (docs/mixing.md).
"""

from __future__ import annotations

import logging
from collections import Counter

from infimed.core.config import ConfigError
from infimed.core.datasets import as_image_list, load_hub, load_local
from infimed.core.errors import InfiMedError
from infimed.data.mixing import MixSource, mix_sources

__all__ = [
    "EmptyDataError",
    "load_stage_datasets",
    "load_stage_stream",
    "require_samples",
    "sample_token_lengths",
    "visual_tokens_per_image",
]

logger = logging.getLogger(__name__)

# Columns training reads; the others are dropped before mixing (sources are concatenated).
_TRAINING_COLUMNS = ("id", "images", "messages", "prompt", "completion", "answer", "kind", "options", "question")


# Distinct column values an empty `where` selection lists, to show what the column does hold.
_VALUES_SHOWN = 8


class EmptyDataError(InfiMedError, ValueError):
    """A stage has no training sample left after its `where` filters or its drops; the message counts them."""


def _load_one(spec):
    if spec.hub_id is not None:
        return load_hub(spec.hub_id, spec.config, spec.split, streaming=spec.streaming)
    return load_local(spec.path, spec.split, streaming=spec.streaming)


def _training_columns(dataset):
    """Keep the columns training reads; images stay undecoded so mixing never decodes (or chokes on) them."""
    dataset = dataset.select_columns([c for c in _TRAINING_COLUMNS if c in dataset.column_names])
    if "images" not in dataset.column_names and not hasattr(dataset, "__len__"):  # a stream: no length to fill
        import datasets  # heavy: see `load_stage_stream`

        features = datasets.Features({**dataset.features, "images": datasets.List(datasets.Image(decode=False))})
        dataset = dataset.map(lambda _: {"images": []}, features=features)
    elif "images" not in dataset.column_names:
        dataset = dataset.add_column("images", [[] for _ in range(len(dataset))])
    return as_image_list(dataset, "images")


def _where(dataset, where: dict | None, label: str, stage_name: str | None):
    if not where:
        return dataset
    missing = sorted(set(where) - set(dataset.column_names))
    if missing:
        raise ValueError(f"Dataset {label!r}: `where` names column(s) {missing} it does not have "
                         f"(columns: {dataset.column_names}).")
    wanted = {col: set(v) if isinstance(v, (list, tuple)) else {v} for col, v in where.items()}
    columns = list(wanted)
    selected = dataset.filter(lambda *values: all(v in wanted[c] for c, v in zip(columns, values)),
                              input_columns=columns, desc=f"Selecting {label}")
    if len(selected) == 0:
        # The values the columns do hold (most common first): usually a typo or another spelling of a kind.
        present = {c: [v for v, _ in Counter(map(str, dataset[c])).most_common(_VALUES_SHOWN)] for c in columns}
        raise EmptyDataError(
            f"{f'Stage {stage_name!r}: ' if stage_name else ''}dataset {label!r}: `where: {where}` selects 0 of "
            f"{len(dataset)} rows; the rows hold {present}. Fix the `where` values or the dataset `path`."
        )
    return selected


def require_samples(stage_name: str, loaded: int, kept: int, dropped: dict[str, int]) -> None:
    """Raise one `EmptyDataError` naming the stage and the drops by reason when no training sample is left."""
    if kept > 0:
        return
    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(dropped.items(), key=lambda kv: -kv[1])) or "none"
    raise EmptyDataError(
        f"Stage {stage_name!r}: no training sample left: {loaded} loaded, all dropped (by reason: {reasons}). Check "
        "the stage's `datasets` (paths, `where`, `count`) and the limits the reasons name (e.g. `max_length`)."
    )


def visual_tokens_per_image(processor) -> int | None:
    """Tokens one image takes in a sample: the processor's fixed count (InfiMed), or the most a dynamic-resolution
    processor gives (Qwen2.5-VL: `longest_edge` pixels / (patch x merge)^2, an upper bound); None when unknown."""
    if getattr(processor, "num_image_tokens", None):
        return int(processor.num_image_tokens)
    image_processor = getattr(processor, "image_processor", None)
    size, patch, merge = (getattr(image_processor, key, None) for key in ("size", "patch_size", "merge_size"))
    if size is None or patch is None or merge is None:
        return None
    longest = size["longest_edge"] if isinstance(size, dict) else getattr(size, "longest_edge", None)
    return None if longest is None else int(longest // (patch * merge) ** 2)


def sample_token_lengths(dataset, processor, image_tokens: int, batch_size: int = 1000) -> list[int]:
    """Tokens of each row as training will see them, from its text and image count alone (no image is decoded).

    The chat template is rendered as text and tokenized; each image placeholder token then counts as
    `image_tokens` (what the processor expands it to). Rows with `prompt`/`completion` columns (GRPO) count both.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    image_token_id = getattr(processor, "image_token_id", None)
    text_columns = [c for c in ("messages", "prompt", "completion") if c in dataset.column_names]
    lengths: list[int] = []
    for batch in dataset.select_columns([*text_columns, "images"]).iter(batch_size=batch_size):
        texts = ["".join(processor.apply_chat_template(batch[c][i], tokenize=False) if isinstance(batch[c][i], list)
                         else str(batch[c][i] or "") for c in text_columns) for i in range(len(batch["images"]))]
        for ids, images in zip(tokenizer(texts, add_special_tokens=False)["input_ids"], batch["images"]):
            placeholders = sum(token == image_token_id for token in ids) if image_token_id is not None else 0
            lengths.append(len(ids) - placeholders + len(images or []) * image_tokens)
    return lengths


def load_stage_datasets(specs, seed: int, stage_name: str | None = None, processor=None):
    """Mix the stage's sources with `infimed.data.mixing.mix_sources`; return `(dataset, mixing report)`.

    With the stage's `processor`, every row's tokens are counted (`sample_token_lengths`, no image decoding), so
    sources can ask for `tokens`/`token_weight` and the report gives each source's requested and taken tokens.
    A `where` that selects no row raises `EmptyDataError` naming `stage_name`, the dataset and the values it holds;
    a source that cannot give what it is asked raises naming it (unless it sets `allow_repeat`/`allow_shortfall`).
    """
    where = f"Stage {stage_name!r}: " if stage_name else ""
    by_tokens = [spec.label for spec in specs if spec.tokens is not None or spec.token_weight is not None]
    image_tokens = visual_tokens_per_image(processor) if processor is not None else None
    if by_tokens and (processor is None or image_tokens is None):
        missing = "the stage's processor" if processor is None else "a visual-token count per image"
        raise ConfigError(f"{where}dataset(s) {by_tokens} mix by tokens, which needs {missing} to count each row's "
                          "tokens; use `count`/`weight` for this stage, or set its `num_image_tokens`.")
    loaded = [_training_columns(_where(_load_one(spec), spec.where, spec.label, stage_name)) for spec in specs]
    # Sources are concatenated, so they keep only the columns they all have (`images` is added where missing).
    common = set.intersection(*(set(d.column_names) for d in loaded))
    sources = []
    for i, (spec, dataset) in enumerate(zip(specs, loaded)):
        # mix_sources needs unique names; two selections of one folder get their position appended
        name = spec.label if sum(s.label == spec.label for s in specs) == 1 else f"{spec.label}#{i}"
        dataset = dataset.select_columns([c for c in loaded[0].column_names if c in common])
        if sources and dataset.features != sources[0].dataset.features:
            try:  # e.g. `text: null` vs absent in image blocks: same data, different inferred schema
                dataset = dataset.cast(sources[0].dataset.features)
            except (ValueError, TypeError) as err:
                raise ValueError(f"Dataset {name!r} cannot be mixed with {sources[0].name!r}: their columns have "
                                 f"different types ({err}). Convert both to the TRL vision format first.") from err
        lengths = sample_token_lengths(dataset, processor, image_tokens) if image_tokens is not None else None
        sources.append(MixSource(dataset, name, weight=spec.weight, count=spec.count, token_weight=spec.token_weight,
                                 tokens=spec.tokens, lengths=lengths, allow_repeat=spec.allow_repeat,
                                 allow_shortfall=spec.allow_shortfall))
    try:
        mixed, report = mix_sources(sources, seed=seed)
    except ValueError as err:
        raise ConfigError(f"{where}{err}") from err
    report["visual_tokens_per_image"] = image_tokens
    return mixed, report


def load_stage_stream(specs, seed: int, stage_name: str | None = None):
    """The stage's streamed sources as one `datasets.IterableDataset`, and its mixing report.

    One source streams as it is; several are interleaved (`datasets.interleave_datasets`) with probabilities from
    their `weight` (equal when unset), and a pass ends when the first source runs out (`first_exhausted`), so no
    source is repeated. A stream has no length: it cannot be mixed by count or tokens (`DatasetSpec` refuses
    those) and `where` filters it on the fly.
    """
    import datasets  # heavy: imported when a stage actually loads data

    streams = []
    for spec in specs:
        stream = _load_one(spec)
        if stream.features is None:  # e.g. JSON lines: the first example tells the columns
            stream = stream._resolve_features()
        if spec.where:
            missing = sorted(set(spec.where) - set(stream.column_names))
            if missing:
                raise ValueError(f"Dataset {spec.label!r}: `where` names column(s) {missing} it does not have "
                                 f"(columns: {stream.column_names}).")
            wanted = {col: set(v) if isinstance(v, (list, tuple)) else {v} for col, v in spec.where.items()}
            stream = stream.filter(lambda ex: all(ex[c] in values for c, values in wanted.items()))
        stream = _training_columns(stream)
        if streams and stream.features != streams[0].features:
            stream = stream.cast(streams[0].features)
        streams.append(stream)
    labels = [spec.label for spec in specs]
    if len(streams) == 1:
        return streams[0], {"streaming": True, "sources": [{"name": labels[0], "probability": 1.0}]}
    weights = [1.0 if spec.weight is None else spec.weight for spec in specs]
    probabilities = [w / sum(weights) for w in weights]
    mixed = datasets.interleave_datasets(streams, probabilities=probabilities, seed=seed,
                                         stopping_strategy="first_exhausted")
    where = f"Stage {stage_name!r}: " if stage_name else ""
    logger.info("%sstreaming %s with probabilities %s", where, labels, [round(p, 4) for p in probabilities])
    return mixed, {"streaming": True, "stopping_strategy": "first_exhausted",
                   "sources": [{"name": n, "probability": round(p, 6)} for n, p in zip(labels, probabilities)]}
