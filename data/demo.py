"""The synthetic, learnable medical VQA demo dataset (``infimed demo-data``).

    infimed demo-data --output demo-output/data --num-samples 2000 --num-eval 200 --seed 0

Writes a ``datasets.DatasetDict`` (``save_to_disk``) with splits ``train`` and ``eval`` and the columns
``id, images, messages, kind, question, answer, options, source, corrupted`` (see the helper contract), plus
``DIR/examples/`` holding one demo radiograph as DICOM and PNG with a question about it (``examples.json``).

Images are rendered chest radiographs (:mod:`infimed.data.demo_render`); questions come from
:mod:`infimed.data.demo_questions`, with answers balanced per question type and determined by the image. The
``train`` split contains a few deliberately corrupted samples, flagged in ``corrupted``; ``eval`` is clean and drawn
from its own random stream, so no image is shared between the splits. Because two train rows hold undecodable image
bytes on purpose, read ``train`` with ``cast_column("images", List(Image(decode=False)))`` and decode each sample with
:func:`infimed.processing.image_io.load_image` (skipping and counting failures), as the training encoder does.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from infimed.core.tasks import QuestionKind

from .demo_questions import QUESTION_TYPES, DemoQuestion, build_prompt
from .demo_render import render_radiograph, to_png_bytes, write_demo_dicom

__all__ = [
    "CORRUPTION_REASONS",
    "DemoDataConfig",
    "DemoSample",
    "demo_features",
    "generate_demo_samples",
    "build_demo_dataset",
    "answer_distribution",
    "save_demo_dataset",
]

SOURCE = "demo"
# Why a train sample is broken; consumers must skip (and count) these.
CORRUPTION_REASONS = ("bad_image_bytes", "truncated_image", "empty_answer", "image_count_mismatch")
# Split index -> independent random stream (SeedSequence spawn key), so train and eval never share draws.
_SPLIT_STREAMS = {"train": 0, "eval": 1}


@dataclass
class DemoDataConfig:
    """Sizes and seed of the demo dataset."""

    num_samples: int = field(
        default=2000,
        metadata={"help": "Train samples. 2000 x ~110 tokens (64 image tokens + text) is ~0.2M tokens per epoch: a "
                  "few epochs of the tiny preset fit in minutes on 2 CPU cores."},
    )
    num_eval: int = field(
        default=200,
        metadata={"help": "Held-out samples. 200 gives ~70 yes/no and ~60 multiple-choice items: a standard error of "
                  "~6 points, well inside the 20-point margin the demo must show, at a few seconds per evaluation."},
    )
    seed: int = field(default=0, metadata={"help": "Seed; the same seed gives byte-identical samples."})
    corrupted_per_reason: int = field(
        default=2,
        metadata={"help": "Deliberately corrupted train samples per reason in CORRUPTION_REASONS (8 of 2000 by "
                  "default); capped so they stay under a tenth of a small train split."},
    )

    def __post_init__(self):
        if self.num_samples < 1 or self.num_eval < 1:
            raise ValueError(
                f"`num_samples` and `num_eval` must be >= 1, got {self.num_samples} and {self.num_eval}."
            )
        if self.corrupted_per_reason < 0:
            raise ValueError(f"`corrupted_per_reason` must be >= 0, got {self.corrupted_per_reason}.")


@dataclass
class DemoSample:
    """A dataset row plus what the renderer drew and the question type (for tests and analysis).

    ``findings`` has one ``{"anatomy": {...}, "lesions": [{...}, ...]}`` per image, in image order.
    """

    row: dict
    question_type: str
    findings: list[dict]


def demo_features():
    """The ``datasets.Features`` of both splits."""
    from datasets import Features, Image, List, Value

    content = List({"type": Value("string"), "text": Value("string")})
    return Features(
        {
            "id": Value("string"),
            "images": List(Image()),
            "messages": List({"role": Value("string"), "content": content}),
            "kind": Value("string"),
            "question": Value("string"),
            "answer": Value("string"),
            "options": List(Value("string")),
            "source": Value("string"),
            "corrupted": Value("string"),
        }
    )


def _schedule(num: int, rng: np.random.Generator) -> list[tuple[int, str]]:
    """(question type index, target answer) per sample: type quotas by weight, targets cycled within each type,
    then shuffled, so kinds and answers are balanced exactly (to +-1) rather than by chance."""
    weights = np.array([qt.weight for qt in QUESTION_TYPES])
    quotas = np.floor(weights / weights.sum() * num).astype(int)
    # Hand the remainder to the largest fractional parts (deterministic: ties broken by type order).
    remainder = weights / weights.sum() * num - quotas
    for i in np.argsort(-remainder, kind="stable")[: num - quotas.sum()]:
        quotas[i] += 1
    plan = []
    for t, (qt, quota) in enumerate(zip(QUESTION_TYPES, quotas)):
        offset = int(rng.integers(len(qt.targets)))  # so a type with quota 1 is not always its first target
        plan.extend((t, qt.targets[(offset + k) % len(qt.targets)]) for k in range(quota))
    return [plan[i] for i in rng.permutation(len(plan))]


def _to_row(item: DemoQuestion, sample_id: str, rng: np.random.Generator) -> dict:
    pngs = [to_png_bytes(render_radiograph(rng, lesions, anatomy)) for anatomy, lesions in item.images]
    content = [{"type": "image", "text": None} for _ in pngs]
    content.append({"type": "text", "text": build_prompt(item.kind, item.question, item.options)})
    return {
        "id": sample_id,
        "images": [{"bytes": png, "path": None} for png in pngs],
        "messages": [
            {"role": "user", "content": content},
            {"role": "assistant", "content": [{"type": "text", "text": item.answer}]},
        ],
        "kind": item.kind,
        "question": item.question,
        "answer": item.answer,
        "options": list(item.options),
        "source": SOURCE,
        "corrupted": "",
    }


def _corrupt(row: dict, reason: str) -> dict:
    """A broken copy of an image row, flagged with ``reason``."""
    row = {**row, "corrupted": reason, "messages": [dict(m, content=list(m["content"])) for m in row["messages"]]}
    if reason == "bad_image_bytes":
        row["images"] = [{"bytes": b"this is not an image", "path": None}]
    elif reason == "truncated_image":
        png = row["images"][0]["bytes"]
        row["images"] = [{"bytes": png[: len(png) // 3], "path": None}]
    elif reason == "empty_answer":
        row["answer"] = ""
        row["messages"][-1]["content"] = [{"type": "text", "text": ""}]
    elif reason == "image_count_mismatch":
        # One more placeholder than images: the processor's token/feature counts would disagree.
        row["messages"][0]["content"].insert(0, {"type": "image", "text": None})
    else:
        raise ValueError(f"unknown corruption {reason!r}; expected one of {CORRUPTION_REASONS}.")
    return row


def generate_demo_samples(config: DemoDataConfig, split: str) -> list[DemoSample]:
    """The samples of ``split`` ("train" or "eval"), deterministic in ``config.seed``."""
    if split not in _SPLIT_STREAMS:
        raise ValueError(f"`split` must be one of {list(_SPLIT_STREAMS)}, got {split!r}.")
    num = config.num_samples if split == "train" else config.num_eval
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(_SPLIT_STREAMS[split],)))
    samples = []
    for i, (t, target) in enumerate(_schedule(num, rng)):
        qt = QUESTION_TYPES[t]
        item = qt.make(rng, target)
        row = _to_row(item, f"demo-{split}-{i:05d}", rng)
        findings = [{"anatomy": asdict(anatomy), "lesions": [les.to_dict() for les in lesions]}
                    for anatomy, lesions in item.images]
        samples.append(DemoSample(row, qt.name, findings))
    if split == "train":
        _inject_corruptions(samples, config, rng)
    return samples


def _inject_corruptions(samples: list[DemoSample], config: DemoDataConfig, rng: np.random.Generator) -> None:
    per_reason = min(config.corrupted_per_reason, len(samples) // (10 * len(CORRUPTION_REASONS)))
    # Only single-image samples are corrupted, so every reason applies to each candidate.
    candidates = [i for i, s in enumerate(samples) if len(s.row["images"]) == 1]
    chosen = rng.choice(candidates, size=min(len(candidates), per_reason * len(CORRUPTION_REASONS)), replace=False)
    for k, i in enumerate(sorted(int(c) for c in chosen)):
        samples[i].row = _corrupt(samples[i].row, CORRUPTION_REASONS[k % len(CORRUPTION_REASONS)])


def build_demo_dataset(config: DemoDataConfig):
    """``DatasetDict(train=..., eval=...)`` in the demo schema."""
    from datasets import Dataset, DatasetDict

    features = demo_features()
    return DatasetDict(
        {
            split: Dataset.from_list([s.row for s in generate_demo_samples(config, split)], features=features)
            for split in _SPLIT_STREAMS
        }
    )


def answer_distribution(dataset) -> dict[str, dict[str, int]]:
    """kind -> answer -> count (captions: number of samples only), over clean samples."""
    out: dict[str, Counter] = {}
    for kind, answer, corrupted in zip(dataset["kind"], dataset["answer"], dataset["corrupted"]):
        if corrupted:
            continue
        out.setdefault(kind, Counter())["<report>" if kind == QuestionKind.CAPTION else answer] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def save_demo_dataset(config: DemoDataConfig, output_dir: str | Path) -> dict:
    """Build, save and summarise the dataset and the DICOM example; returns the summary written to ``info.json``."""
    output_dir = Path(output_dir)
    start = time.perf_counter()
    dataset = build_demo_dataset(config)
    dataset.save_to_disk(str(output_dir))
    examples = output_dir / "examples"
    examples.mkdir(parents=True, exist_ok=True)
    dicom = write_demo_dicom(examples / "demo.dcm", seed=config.seed)
    (examples / "demo.png").write_bytes(dicom.pop("png"))
    dicom["png_path"] = str(examples / "demo.png")
    (examples / "examples.json").write_text(json.dumps(dicom, indent=2) + "\n")
    info = {
        "config": asdict(config),
        "splits": {split: len(ds) for split, ds in dataset.items()},
        "corrupted": dict(Counter(r for r in dataset["train"]["corrupted"] if r)),
        "answers": {split: answer_distribution(ds) for split, ds in dataset.items()},
        "dicom_example": dicom,
        "seconds": round(time.perf_counter() - start, 2),
    }
    (output_dir / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
