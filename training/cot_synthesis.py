"""Chain-of-thought synthesis with rejection sampling: SFT data with `<think>` traces written by a teacher model.

For each selected (information-sparse) sample, a teacher writes ``num_candidates`` traces in each style (general
CoT and reflective CoT, see `cot_prompts`). A candidate is kept only when it has the `<think>...</think><answer>...
</answer>` layout and its answer, extracted by the same scorer the evaluation harness uses, matches the gold answer.
Every candidate ends in exactly one bucket, so ``candidates == kept + sum(rejected.values())``:

    teacher_error  the request failed (after the client's bounded retries)
    bad_format     no `<think>...</think><answer>...</answer>` layout
    wrong_answer   the extracted answer does not match the gold answer
    not_reflective a `reflective`-style trace with no re-examination step the checker can identify
                   (`cot_prompts.reflection_step`: a revisited finding, a considered alternative, a confirmation
                   or a correction); a plain trace is never kept under the reflective label
    duplicate      the same trace as one already kept for this sample
    surplus        correct, but ``max_keep_per_style`` traces of this style were already kept

The report counts candidates, kept traces and rejections by reason per style (`by_style`), and `kept_by_style`.

Which samples get traces ("information-sparse" ones, in the paper's words) is `CoTSelectionConfig`: samples of the
verifiable `kinds` whose gold answer has at most `max_answer_words` words (a yes/no, a letter, a short finding: the
answer alone teaches no reasoning), optionally capped at `max_samples`; every other row is counted by skip reason.

    infimed synthesize-cot recipes/cot/demo.yaml
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from infimed.core.answers import ANSWER_FORMAT_INSTRUCTION, score_answer
from infimed.core.config import config_from_dict, load_yaml
from infimed.core.datasets import as_image_list
from infimed.core.endpoints import EndpointConfig
from infimed.core.llm_client import ChatClient, cache_key, image_part
from infimed.training.cot_prompts import COT_STYLES, build_teacher_text, reflection_step
from infimed.training.rewards import add_format_instruction, format_reward

__all__ = [
    "CoTSelectionConfig",
    "CoTSynthesisConfig",
    "CoTTeacherConfig",
    "CHECKED_REFLECTIVE_STYLES",
    "REJECTION_REASONS",
    "load_cot_config",
    "select_samples",
    "synthesize_cot",
]

logger = logging.getLogger(__name__)

REJECTION_REASONS = ("teacher_error", "bad_format", "wrong_answer", "not_reflective", "duplicate", "surplus")
# The styles whose traces must show a re-examination step (`cot_prompts.reflection_step`).
CHECKED_REFLECTIVE_STYLES = ("reflective",)
# Rejected candidates shown per reason in the report, each cut to a few lines: enough to see why prompts fail.
_EXAMPLES_PER_REASON = 3
_EXAMPLE_CHARS = 200


@dataclass
class CoTTeacherConfig(EndpointConfig):
    """Which model writes the traces: an ``EndpointConfig`` with a teacher's defaults (it samples, and writes long)."""

    # 0.7: diverse enough that K candidates differ, low enough that most stay on topic (typical rejection-sampling
    # setting); 0.0 makes all K candidates identical (they are then counted as duplicates).
    temperature: float | None = field(default=0.7, metadata={"help": "Sampling temperature of the teacher."})
    # 1024 tokens hold a reflective trace with its re-check; short-answer VQA traces are usually 100-400.
    max_tokens: int | None = field(default=1024, metadata={"help": "Token budget of one trace."})
    # 120 s: a 72B teacher writing a 1024-token reflective trace takes tens of seconds under load.
    timeout: float = field(default=120.0, metadata={"help": "Seconds per HTTP attempt."})

    def __post_init__(self):
        super().__post_init__()
        self.check("teacher")


@dataclass
class CoTSelectionConfig:
    """Which samples get traces: information-sparse ones, i.e. short gold answers of verifiable kinds."""

    kinds: list[str] = field(
        default_factory=lambda: ["yes_no", "multiple_choice", "open", "closed"],
        metadata={"help": "Question kinds to synthesize for (captions/reports are not string-verifiable)."},
    )
    # 8 words: yes/no, option letters and short findings ("left upper zone") pass; sentences and reports do not.
    max_answer_words: int = field(default=8, metadata={"help": "Longest gold answer (in words) counted as sparse."})
    max_samples: int | None = field(default=None, metadata={"help": "Cap on selected samples (seeded choice)."})


@dataclass
class CoTSynthesisConfig:
    """`infimed synthesize-cot CONFIG.yaml`: data in, teacher, styles, K, and where the SFT-ready dataset goes."""

    dataset: str = field(metadata={"help": "`save_to_disk` folder (DatasetDict or Dataset) or a Hub dataset id."})
    output_dir: str = field(metadata={"help": "Writes the dataset (`save_to_disk`) and `report.json` here."})
    teacher: CoTTeacherConfig = field(metadata={"help": "The teacher model (see `CoTTeacherConfig`)."})
    split: str = field(default="train", metadata={"help": "Split to read."})
    styles: list[str] = field(default_factory=lambda: ["general", "reflective"], metadata={"help": "Trace styles."})
    # 4 per style: with a teacher right ~60% of the time, P(no correct trace in 4) is ~3%.
    num_candidates: int = field(default=4, metadata={"help": "Candidates K per sample and style."})
    max_keep_per_style: int | None = field(
        default=1, metadata={"help": "Correct traces kept per sample and style (None: all distinct correct ones)."}
    )
    selection: CoTSelectionConfig = field(default_factory=CoTSelectionConfig, metadata={"help": "Sample selection."})
    check_reflection: bool = field(
        default=True,
        metadata={"help": "Reject reflective-style traces without a re-examination step (`not_reflective`)."},
    )
    add_format_instruction: bool = field(
        default=True, metadata={"help": "Append the `<think>/<answer>` instruction to the output user turns."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the sample choice under `selection.max_samples`."})

    def __post_init__(self):
        if isinstance(self.teacher, dict):
            self.teacher = config_from_dict(CoTTeacherConfig, self.teacher, "teacher")
        if isinstance(self.selection, dict):
            self.selection = config_from_dict(CoTSelectionConfig, self.selection, "selection")
        unknown = [s for s in self.styles if s not in COT_STYLES]
        if unknown or not self.styles:
            raise ValueError(f"`styles` must be a non-empty subset of {sorted(COT_STYLES)}, got {self.styles}.")
        if self.num_candidates < 1:
            raise ValueError(f"`num_candidates` must be >= 1, got {self.num_candidates}.")
        if self.max_keep_per_style is not None and self.max_keep_per_style < 1:
            raise ValueError(f"`max_keep_per_style` must be >= 1 or null, got {self.max_keep_per_style}.")


def load_cot_config(path: str | os.PathLike, **overrides: Any) -> CoTSynthesisConfig:
    """Read a synthesis YAML; ``overrides`` (non-None) replace top-level keys, e.g. ``output_dir``."""
    data = {**load_yaml(path), **{k: v for k, v in overrides.items() if v is not None}}
    return config_from_dict(CoTSynthesisConfig, data, str(path))


def select_samples(dataset, selection: CoTSelectionConfig, seed: int) -> tuple[list[int], Counter]:
    """Indices of the samples to synthesize for, and the skip counts by reason (every row is in one of them)."""
    import random

    skipped: Counter = Counter()
    chosen = []
    columns = set(dataset.column_names)
    for name in ("question", "answer", "kind"):
        if name not in columns:
            raise ValueError(f"CoT synthesis needs a `{name}` column (demo schema); the dataset has {sorted(columns)}.")
    corrupted = dataset["corrupted"] if "corrupted" in columns else [""] * len(dataset)
    for i, (kind, answer, bad) in enumerate(zip(dataset["kind"], dataset["answer"], corrupted, strict=True)):
        if bad:
            skipped["corrupted"] += 1
        elif not str(answer or "").strip():
            skipped["empty_answer"] += 1
        elif kind not in selection.kinds:
            skipped["kind_not_selected"] += 1
        elif len(str(answer).split()) > selection.max_answer_words:
            skipped["answer_not_sparse"] += 1
        else:
            chosen.append(i)
    if selection.max_samples is not None and len(chosen) > selection.max_samples:
        keep = set(random.Random(seed).sample(chosen, selection.max_samples))
        skipped["over_max_samples"] += len(chosen) - len(keep)
        chosen = [i for i in chosen if i in keep]
    return chosen, skipped


def _teacher_request(row: dict, style: str) -> list[dict]:
    parts = [image_part(image) for image in (row.get("images") or [])]
    parts.append({"type": "text", "text": build_teacher_text(style, row["question"], row["kind"], row.get("options"))})
    return [{"role": "user", "content": parts}]


def _output_row(row: dict, trace: str, style: str, k: int, teacher: str, prompt_hash: str, instruct: bool) -> dict:
    user = next((m for m in row["messages"] if m["role"] == "user"), None)
    if user is None:
        raise ValueError(f"Sample {row.get('id')!r} has no user turn in `messages`.")
    user = add_format_instruction(user, ANSWER_FORMAT_INSTRUCTION if instruct else "")
    # Keep only the TRL content keys so every row fits one Arrow schema, whatever extra keys the source carried.
    user["content"] = [{"type": block["type"], "text": block.get("text")} for block in user["content"]]
    out = {key: value for key, value in row.items() if key not in ("messages", "corrupted")}
    out.update(
        id=f"{row.get('id', '')}-cot-{style}-{k}",
        messages=[user, {"role": "assistant", "content": [{"type": "text", "text": trace.strip()}]}],
        cot_source_id=str(row.get("id", "")),
        cot_style=style,
        cot_candidate=k,
        cot_teacher=teacher,
        cot_prompt_hash=prompt_hash,
    )
    return out


def synthesize_cot(dataset, client: ChatClient, config: CoTSynthesisConfig):
    """Write, check and keep traces for ``dataset``; returns ``(datasets.Dataset, report dict)``."""
    start = time.perf_counter()
    indices, skipped = select_samples(dataset, config.selection, config.seed)
    # Keep images as encoded bytes: they pass through to the output without a decode/encode round trip.
    if "images" in dataset.column_names:
        dataset = as_image_list(dataset, "images")
    rows, requests = {}, {}
    for i in indices:
        row = dataset[i]
        try:
            requests[i] = {style: _teacher_request(row, style) for style in config.styles}
        except ValueError as exc:  # ImageLoadError is a ValueError naming the file and reason
            skipped["image_error"] += 1
            logger.warning("Skipping sample %r: %s", row.get("id"), exc)
            continue
        rows[i] = row
    teacher = json.dumps(client.identity(), sort_keys=True)
    params = dict(client.default_params)

    rejected: Counter = Counter({reason: 0 for reason in REJECTION_REASONS})
    by_style = {style: Counter(candidates=0, kept=0) for style in config.styles}
    rejected_by_style = {style: Counter() for style in config.styles}
    examples: dict[str, list[str]] = {reason: [] for reason in REJECTION_REASONS}
    cached = 0
    kept_rows: list[dict] = []
    kept_texts: dict[int, set[str]] = {i: set() for i in rows}
    kept_per_style: Counter = Counter()
    order = list(rows)
    for style in config.styles:
        for k in range(config.num_candidates):
            # One batched call per (style, k) over all samples; `seed` makes candidate k its own cache entry and,
            # on endpoints that honour it, its own sample.
            batch = [requests[i][style] for i in order]
            results = client.complete(batch, seed=k)
            for i, messages, result in zip(order, batch, results, strict=True):
                by_style[style]["candidates"] += 1
                cached += int(result.cached)
                text = (result.text or "").strip()
                reason = _rejection_reason(result, text, rows[i], kept_texts[i], kept_per_style[i, style], config,
                                           style)
                if reason is not None:
                    rejected[reason] += 1
                    rejected_by_style[style][reason] += 1
                    if len(examples[reason]) < _EXAMPLES_PER_REASON:
                        shown = result.error if reason == "teacher_error" else text[:_EXAMPLE_CHARS]
                        examples[reason].append(f"{rows[i].get('id')}/{style}/{k}: {shown}")
                    continue
                kept_texts[i].add(" ".join(text.split()))
                kept_per_style[i, style] += 1
                by_style[style]["kept"] += 1
                prompt_hash = cache_key(client.model, messages, {**params, "seed": k})
                kept_rows.append(
                    _output_row(rows[i], text, style, k, teacher, prompt_hash, config.add_format_instruction)
                )

    output = _to_dataset(kept_rows, dataset)
    candidates = sum(s["candidates"] for s in by_style.values())
    report = {
        "samples_total": len(dataset),
        "samples_selected": len(rows),
        "samples_skipped": dict(sorted(skipped.items())),
        "samples_with_trace": len({r["cot_source_id"] for r in kept_rows}),
        "candidates": candidates,
        "kept": len(kept_rows),
        "rejected": dict(rejected),
        "kept_by_style": {style: counts["kept"] for style, counts in by_style.items()},
        "by_style": {style: {**counts, "rejected": dict(rejected_by_style[style])}
                     for style, counts in by_style.items()},
        "cached_answers": cached,
        "teacher": json.loads(teacher),
        "rejected_examples": {reason: shown for reason, shown in examples.items() if shown},
        "config": _jsonable(config),
        "seconds": round(time.perf_counter() - start, 3),
    }
    per_style_lost = any(c["candidates"] != c["kept"] + sum(rejected_by_style[style].values())
                         for style, c in by_style.items())
    if per_style_lost or candidates != report["kept"] + sum(rejected.values()):  # each candidate: one bucket
        raise RuntimeError(f"CoT synthesis lost candidates: {report}")
    return output, report


def _rejection_reason(result, text: str, row: dict, kept: set, kept_in_style: int, config, style: str) -> str | None:
    """The bucket of one candidate (see the module docstring), or None when it is kept."""
    if not result.ok:
        return "teacher_error"
    if format_reward([text]) != [1.0]:
        return "bad_format"
    options = list(row.get("options") or []) or None
    if not score_answer(text, str(row["answer"]), row["kind"], options).correct:
        return "wrong_answer"
    if config.check_reflection and style in CHECKED_REFLECTIVE_STYLES and reflection_step(text) is None:
        return "not_reflective"
    if " ".join(text.split()) in kept:
        return "duplicate"
    if config.max_keep_per_style is not None and kept_in_style >= config.max_keep_per_style:
        return "surplus"
    return None


def _to_dataset(rows: list[dict], source):
    """The kept rows as a Dataset with the source's features plus the provenance columns (also when empty)."""
    import datasets

    features = {k: v for k, v in source.features.items() if k not in ("corrupted",)}
    if "images" in features:
        features["images"] = datasets.List(datasets.Image())
    features.pop("messages", None)
    features = datasets.Features(
        {
            **features,
            "messages": datasets.List(
                {"role": datasets.Value("string"), "content": datasets.List(
                    {"type": datasets.Value("string"), "text": datasets.Value("string")}
                )}
            ),
            "cot_source_id": datasets.Value("string"),
            "cot_style": datasets.Value("string"),
            "cot_candidate": datasets.Value("int32"),
            "cot_teacher": datasets.Value("string"),
            "cot_prompt_hash": datasets.Value("string"),
        }
    )
    if not rows:
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    return datasets.Dataset.from_list(rows, features=features)


def _jsonable(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) else obj
