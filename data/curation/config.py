"""Typed curation config, read with the one config parser (``infimed.core.config``; ``CurationConfig.from_yaml``).

    sources:
      - {name: demo, path: demo-data, split: train}
      - {name: slake, format: slake, source: BoKelvin/SLAKE, split: train, license: cc-by-4.0}
    thresholds: {image_quality: 0.5, text_quality: 0.5, answer_validity: 0.5}
    judge: {enabled: false}     # else an `EndpointConfig`: {enabled: true, kind: openai, base_url: ..., model: ...}
    decontamination: {benchmarks: [{name: demo-eval, path: demo-data, split: eval}]}

Unknown keys and wrong types raise a ``ConfigError`` (a ``ValueError``) naming the key, so a typo never silently
disables a filter.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from infimed.core.config import config_from_dict, load_yaml
from infimed.core.endpoints import EndpointConfig

from .dimensions import DIMENSION_NAMES, MODEL_DIMENSIONS

__all__ = [
    "SourceConfig", "ImageRules", "TextRules", "AnswerRules", "JudgeConfig", "DedupConfig", "DecontaminationConfig",
    "AuditConfig", "CardConfig", "CurationConfig",
]


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: _copy(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def _copy(value):
    return copy.deepcopy(value)


@dataclass
class SourceConfig:
    """One input (or one benchmark to decontaminate against)."""

    name: str = _f("", "Label used in reports and the `source` column.")
    path: str | None = _f(None, "A `save_to_disk` folder or parquet/json files already in the training format.")
    hub_id: str | None = _f(None, "A Hub dataset already in the training format (read with `datasets.load_dataset`).")
    format: str | None = _f(None, "A converter name from `infimed.data.converters.READERS` (e.g. `slake`).")
    source: str | None = _f(None, "Hub id or local path handed to the converter named by `format`.")
    split: str | None = _f("train", "Split to read.")
    limit: int | None = _f(None, "Read at most this many rows (quick trials).")
    license: str | None = _f(None, "SPDX licence id of this source, copied to the dataset card.")
    options: dict = _f({}, "Extra keyword arguments for the converter (e.g. `lang: en`).")

    def __post_init__(self):
        given = [k for k in ("path", "hub_id", "format") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"source {self.name!r} must set exactly one of `path`, `hub_id`, `format`; got {given}.")
        if self.format and not self.source:
            raise ValueError(f"source {self.name!r} sets `format: {self.format}` but no `source` to read.")
        if not self.name:
            self.name = Path(self.path or self.hub_id or self.source).name
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"source {self.name!r}: `limit` must be >= 1, got {self.limit}.")


@dataclass
class ImageRules:
    min_side: int = _f(64, "Short side (px) for a full resolution score; 64 is the tiny preset's input, smaller "
                           "images carry too little detail to upscale to the real presets' 384 px.")
    max_aspect: float = _f(4.0, "Longest/shortest side above which the score falls; wider strips are mostly "
                                "mis-cropped figure panels.")
    min_std: float = _f(0.02, "Grey-level standard deviation (0-1 scale) under which an image is blank/near-constant "
                              "(about 5 grey levels of 255).")
    min_contrast: float = _f(0.15, "1st-99th percentile grey range (0-1) for a full contrast score.")
    min_sharpness: float = _f(2e-4, "Variance of the Laplacian (0-1 grey scale) for a full sharpness score; set low "
                                    "because radiographs and pathology slides are smooth by nature.")


@dataclass
class TextRules:
    min_question_chars: int = _f(3, "Shortest acceptable question (VQA questions such as 'CT?' are 3 chars).")
    max_question_chars: int = _f(8000, "Longest question: MedXpertQA vignettes and PubMedQA contexts (a few thousand "
                                       "characters) fit; longer is almost always a scraping error.")
    max_answer_chars: int = _f(8000, "Longest answer: full radiology reports (typically < 3000 characters) fit.")
    languages: list[str] = _f(["en", "zh"], "Allowed question languages by script (en = Latin, zh = CJK); [] allows "
                                            "any.")
    check_identifiers: bool = _f(True, "Drop text with e-mail addresses, phone, social-security or record numbers.")
    boilerplate: list[str] = _f(["lorem ipsum", "as an ai language model", "click here", "all rights reserved",
                            "subscribe to", "cookie policy"], "Phrases that mark scraped or generated boilerplate.")


@dataclass
class AnswerRules:
    max_open_answer_words: int = _f(40, "Open answers longer than this are hard to verify by string or judge match; "
                                        "captions and multi-turn conversations are exempt.")
    min_leak_chars: int = _f(4, "Open answers at least this long that appear verbatim in the question count as leaked.")


@dataclass
class JudgeConfig(EndpointConfig):
    """The model scorer: an ``EndpointConfig`` (kind, base_url, model, ...) plus what to ask it and how to batch."""

    temperature: float | None = _f(0.0, "Greedy: the same sample always gets the same grade.")
    max_tokens: int | None = _f(128, "Judge answer budget; the JSON verdict needs well under 100 tokens.")
    enabled: bool = _f(False, "Score the model dimensions (alignment, medical_relevance) with a judge.")
    dimensions: list[str] = _f(list(MODEL_DIMENSIONS), "Model-scored dimensions to ask the judge for.")
    samples_per_call: int = _f(64, "Samples handed to the client per call; bounds memory of inline images.")
    max_image_side: int = _f(512, "Images are downscaled to this side before sending, bounding request size.")
    on_failure: Literal["drop", "keep"] = _f(
        "drop", "`drop`: a sample the judge could not score is dropped as unscored; `keep`: kept with its score "
                "empty and a flag. Counted in the report either way."
    )

    def __post_init__(self):
        super().__post_init__()
        if self.on_failure not in ("drop", "keep"):
            raise ValueError(f"`judge.on_failure` must be `drop` or `keep`, got {self.on_failure!r}.")
        bad = [d for d in self.dimensions if d not in MODEL_DIMENSIONS]
        if bad:
            raise ValueError(f"`judge.dimensions` may hold {MODEL_DIMENSIONS}, got {bad}.")
        if self.enabled:
            self.check("judge")


@dataclass
class DedupConfig:
    enabled: bool = _f(True, "Drop duplicate samples (the first occurrence is kept).")
    near_images: bool = _f(True, "Also treat perceptual-hash near-identical images with the same question as "
                                 "duplicates.")
    hash_size: int = _f(16, "dHash grid side (16 -> 256-bit hashes). The common 8 x 8 hash is useless on medical "
                            "images: distinct radiographs look alike at that scale (every demo image hashed the same).")
    max_hamming: int = _f(8, "Largest distance (of 256 bits) for 'near': JPEG re-encoding or 2x resizing of demo "
                             "radiographs flipped <= 9 bits at the 90th percentile, distinct ones differ by >= 9.")


@dataclass
class DecontaminationConfig:
    benchmarks: list[SourceConfig] = _f([], "Evaluation sets (same keys as `sources`) whose images/questions must not "
                                            "be trained on.")
    max_hamming: int = _f(8, "Perceptual-hash distance for an image match (hash size from `dedup.hash_size`).")
    min_question_words: int = _f(8, "Question-only matches count for questions of at least this many words (or any "
                                    "text-only sample): short VQA questions recur across unrelated images.")


@dataclass
class AuditConfig:
    enabled: bool = _f(True, "Write a stratified audit sample (CSV + offline HTML) under OUTPUT/audit.")
    per_stratum: int = _f(5, "Samples per (source, score band) stratum: 3 bands x 5 = 15 per source, about half "
                             "an hour of a clinician's time for a few sources.")
    bands: list[float] = _f([0.5, 0.8], "Band edges on the worst dimension score: low < 0.5 <= mid < 0.8 <= high; "
                                        "0.5 is the default threshold, so 'low' is what gets dropped and 'mid' what "
                                        "barely passes.")


@dataclass
class CardConfig:
    pretty_name: str = _f("InfiMed curated dataset", "Title of the dataset card.")
    license: str = _f("other", "SPDX licence of the curated set (use the most restrictive of the sources).")
    description: str = _f("", "Free text for the card's summary.")
    language: list[str] = _f(["en"], "Languages for the card metadata.")


@dataclass
class CurationConfig:
    sources: list[SourceConfig] = _f([], "Inputs, read in order (earlier sources win duplicate ties).")
    thresholds: dict[str, float] = _f({}, "Keep a sample when score >= threshold, per dimension (default 0.5 each).")
    image_rules: ImageRules = _f(ImageRules(), "Image quality parameters.")
    text_rules: TextRules = _f(TextRules(), "Text quality parameters.")
    answer_rules: AnswerRules = _f(AnswerRules(), "Answer validity parameters.")
    judge: JudgeConfig = _f(JudgeConfig(), "Model scorer for alignment / medical relevance.")
    dedup: DedupConfig = _f(DedupConfig(), "Duplicate removal.")
    decontamination: DecontaminationConfig = _f(DecontaminationConfig(), "Benchmark decontamination.")
    audit: AuditConfig = _f(AuditConfig(), "Human audit export.")
    card: CardConfig = _f(CardConfig(), "Dataset card fields.")
    seed: int = _f(42, "Seeds audit sampling (42: the evaluation default, one seed across the project).")
    num_proc: int = _f(1, "Worker processes for rule scoring (image decoding dominates; use the core count).")
    chunk_size: int = _f(1000, "Rows read and scored per step; bounds memory (1000 rows of ~200 KB images is about "
                               "200 MB) for large or streamed sources.")
    shard_size: int = _f(5000, "Rows per output parquet shard: ~1 GB at ~200 KB per image, within the Hub's "
                               "recommended shard size for the dataset viewer and streaming.")
    streaming: bool = _f(False, "Stream Hub ids and parquet/json/csv sources (`datasets` streaming): rows are read "
                                "chunk by chunk and never materialised in full, not even in the local cache.")

    DEFAULT_THRESHOLD = 0.5  # rubric >= 3 for model dims; soft rule issues (0.6) flag without dropping

    def threshold(self, name: str) -> float:
        return float(self.thresholds.get(name, self.DEFAULT_THRESHOLD))

    @property
    def active_dimensions(self) -> list[str]:
        model = set(self.judge.dimensions) if self.judge.enabled else set()
        return [d for d in DIMENSION_NAMES if d not in MODEL_DIMENSIONS or d in model]

    def __post_init__(self):
        if not self.sources:
            raise ValueError("The curation config has no `sources`; list at least one input.")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"Source names must be unique, got {names}.")
        for name, value in self.thresholds.items():
            if name not in DIMENSION_NAMES:
                raise ValueError(f"Unknown dimension {name!r} in `thresholds`; use one of {DIMENSION_NAMES}.")
            if not 0 <= value <= 1:
                raise ValueError(f"`thresholds.{name}` must be a number in [0, 1], got {value!r}.")
        for key in ("num_proc", "chunk_size", "shard_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"`{key}` must be >= 1, got {getattr(self, key)}.")
        if sorted(self.audit.bands) != list(self.audit.bands):
            raise ValueError(f"`audit.bands` must be increasing, got {self.audit.bands}.")

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "CurationConfig":
        return config_from_dict(cls, data or {}, where)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "CurationConfig":
        return cls.from_dict(load_yaml(path), str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

