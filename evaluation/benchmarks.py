"""Benchmark registry: which reader, source and split each benchmark uses, and how its items become ``EvalItem``s.

Raw public schemas are parsed once, by the readers of ``infimed.data.converters`` (shared with the training data
converters); this module only decides prompt type, scoring kind and report categories, following MedEvalKit:

- VQA-RAD, PathVQA: a yes/no gold answer makes a closed yes/no item (judgement prompt), anything else open;
- SLAKE: the official ``answer_type``; closed items get the "single word or phrase" prompt and are scored as yes/no
  when the gold is yes/no (是/否 in Chinese), else by normalised exact match; English and Chinese are reported
  separately (``by_lang``) and together, and ``slake_en`` / ``slake_zh`` select one language;
- PMC-VQA, OmniMedVQA, MedXpertQA-MM, MedQA, MedMCQA, PubMedQA (yes/no/maybe as options): multiple choice;
- MMMU Health & Medicine (five subjects, validation split): multiple choice with "(A) text" options, open questions
  with the "single word or phrase" prompt;
- demo: the ``eval`` split of ``infimed demo-data``, prompted with its own user turns (the training format).

Items that cannot be scored (no gold answer, gold not among the options) are skipped and counted by reason.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infimed.core.answers import extract_yes_no
from infimed.core.datasets import _TABLE_SUFFIXES, load_local
from infimed.core.errors import InputFileError
from infimed.core.tasks import QuestionKind, option_letters
from infimed.data.converters import READERS

from .items import EvalItem

__all__ = ["BENCHMARKS", "BenchmarkSpec", "LoadedBenchmark", "load_benchmark", "resolve_benchmark_names"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark comes from and how it is reported (``dataset_type`` is the Hub id for model cards)."""

    name: str
    pretty: str
    reader: str  # key of infimed.data.converters.READERS, or "demo"
    hub_id: str | None
    split: str | None
    local_names: tuple[str, ...] = ()
    reader_kwargs: dict = field(default_factory=dict)
    category_keys: tuple[str, ...] = ()  # MedRecord.meta keys reported as breakdowns


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in [
        BenchmarkSpec("vqa_rad", "VQA-RAD", "vqa_rad", "flaviagiammarino/vqa-rad", "test", ("vqa-rad", "VQA_RAD")),
        BenchmarkSpec("slake", "SLAKE", "slake", "BoKelvin/SLAKE", "test", ("SLAKE",)),
        BenchmarkSpec("slake_en", "SLAKE (en)", "slake", "BoKelvin/SLAKE", "test", ("slake", "SLAKE"), {"lang": "en"}),
        BenchmarkSpec("slake_zh", "SLAKE (zh)", "slake", "BoKelvin/SLAKE", "test", ("slake", "SLAKE"), {"lang": "zh"}),
        BenchmarkSpec("path_vqa", "PathVQA", "pathvqa", "flaviagiammarino/path-vqa", "test", ("pathvqa", "path-vqa")),
        BenchmarkSpec("pmc_vqa", "PMC-VQA", "pmc_vqa", "RadGenome/PMC-VQA", "test_2", ("pmc-vqa", "PMC-VQA")),
        BenchmarkSpec("omnimedvqa", "OmniMedVQA", "omnimedvqa", "foreverbeliever/OmniMedVQA", None,
                      ("OmniMedVQA", "OmniMedVQA.zip"),
                      category_keys=("question_type", "modality_type")),
        BenchmarkSpec("medxpertqa_mm", "MedXpertQA-MM", "medxpertqa_mm", "TsinghuaC3I/MedXpertQA", "test",
                      ("medxpertqa", "MedXpertQA"), category_keys=("medical_task",)),
        BenchmarkSpec("mmmu_hm", "MMMU H&M", "mmmu", "MMMU/MMMU", "validation", ("mmmu", "MMMU"),
                      category_keys=("subject",)),
        BenchmarkSpec("medqa", "MedQA-USMLE", "medqa", "GBaker/MedQA-USMLE-4-options", "test", ("MedQA",)),
        BenchmarkSpec("medmcqa", "MedMCQA", "medmcqa", "openlifescienceai/medmcqa", "validation", ("MedMCQA",),
                      category_keys=("subject_name",)),
        BenchmarkSpec("pubmedqa", "PubMedQA", "pubmedqa", "openlifescienceai/pubmedqa", "test", ("PubMedQA",),
                      {"config": None}),
        BenchmarkSpec("demo", "Demo (held-out)", "demo", None, "eval", ("demo", "data")),
    ]
}
_ALIASES = {"pathvqa": "path_vqa", "mmmu": "mmmu_hm", "medxpertqa": "medxpertqa_mm", "vqarad": "vqa_rad",
            "pmcvqa": "pmc_vqa", "omnimed": "omnimedvqa", "medqa_usmle": "medqa"}
# The seven benchmarks of the InfiMed results table, in its column order.
INFIMED_TABLE = ("mmmu_hm", "vqa_rad", "slake", "path_vqa", "pmc_vqa", "omnimedvqa", "medxpertqa_mm")


def resolve_benchmark_names(names: str | list[str]) -> list[str]:
    """``"vqa_rad,slake"`` / a list / ``"infimed"`` (the seven of the InfiMed table) -> registry names."""
    raw = names.split(",") if isinstance(names, str) else list(names)
    out = []
    for name in (n.strip() for n in raw if n.strip()):
        if name.lower() == "infimed":
            out.extend(INFIMED_TABLE)
            continue
        key = _ALIASES.get(name.lower().replace("-", "_"), name.lower().replace("-", "_"))
        if key not in BENCHMARKS:
            raise ValueError(f"Unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)} or 'infimed'.")
        out.append(key)
    return list(dict.fromkeys(out))


@dataclass
class LoadedBenchmark:
    spec: BenchmarkSpec
    items: list[EvalItem]
    source: str
    skipped: dict[str, int]


def _resolve_source(spec: BenchmarkSpec, data_dir: str | os.PathLike | None) -> str:
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            # A typo'd folder must not turn into a silent download of the Hub copy (another split, other items).
            raise InputFileError(
                f"`--data-dir` {str(root)!r} is not an existing folder; point it at the folder holding "
                f"`{spec.name}/` (or drop `--data-dir` to read the Hub dataset {spec.hub_id or '(none: local only)'})."
            )
        if spec.reader == "demo" and (root / "dataset_dict.json").exists():
            return str(root)
        for name in (spec.name, *spec.local_names):
            if (root / name).exists():
                return str(root / name)
    if spec.hub_id is None:
        raise ValueError(
            f"Benchmark {spec.name!r} is local only: pass `--data-dir` pointing at the folder written by "
            "`infimed demo-data --output DIR` (or its parent holding `demo/`)."
        )
    if data_dir is not None:
        logger.warning("No %s folder under %s (tried %s); reading the Hub dataset %s.", spec.name, data_dir,
                       (spec.name, *spec.local_names), spec.hub_id)
    return spec.hub_id


def _record_to_item(spec: BenchmarkSpec, record: Any) -> EvalItem | str:
    """An ``EvalItem`` from a ``MedRecord``, or the reason it cannot be scored."""
    answer = str(record.answer or "").strip()
    if not answer:
        return "no gold answer"
    answer_type = (record.answer_type or "").lower()
    category = {k: str(record.meta[k]) for k in spec.category_keys if record.meta.get(k) is not None}
    common = dict(id=str(record.id), benchmark=spec.name, question=record.question, images=list(record.images),
                  lang=record.lang or "en", source=dict(record.meta.get("source") or {}))
    if spec.reader == "slake":
        category["lang"] = record.lang or "en"
    if record.kind == QuestionKind.MULTIPLE_CHOICE:
        if answer not in option_letters(len(record.options)):
            return "gold answer is not one of the options"
        return EvalItem(**common, answer=answer, kind=QuestionKind.MULTIPLE_CHOICE, prompt_type="multiple_choice",
                        options=list(record.options), option_format="paren" if spec.reader == "mmmu" else "dot",
                        category={"answer_type": "closed", **category})
    if record.kind == QuestionKind.YES_NO:
        prompt_type = "close_ended" if spec.reader == "slake" else "judgement"
        return EvalItem(**common, answer=answer, kind=QuestionKind.YES_NO, prompt_type=prompt_type,
                        category={"answer_type": "closed", **category})
    if answer_type == "closed":
        # SLAKE closed with a Chinese or non-yes/no gold (是/否, "Left", "CT"): yes/no scoring only for a bare
        # yes/no word, normalised exact match otherwise.
        bare_yes_no = len(answer) <= 3 and extract_yes_no(answer) is not None
        kind = QuestionKind.YES_NO if bare_yes_no else QuestionKind.CLOSED
        return EvalItem(**common, answer=answer, kind=kind, prompt_type="close_ended",
                        category={"answer_type": "closed", **category})
    if spec.reader == "mmmu":
        return EvalItem(**common, answer=answer, kind=QuestionKind.CLOSED, prompt_type="close_ended",
                        category={"answer_type": "open", **category})
    kind = QuestionKind.CAPTION if record.kind == QuestionKind.CAPTION else QuestionKind.OPEN
    return EvalItem(**common, answer=answer, kind=kind, prompt_type="open_ended",
                    category={"answer_type": "open", **category})


def _load_demo(source: str, split: str) -> tuple[list[EvalItem], dict[str, int]]:
    loaded = load_local(source, split)
    items, skipped = [], {}
    for row in loaded:
        reason = row.get("corrupted") or ("no gold answer" if not str(row.get("answer", "")).strip() else "")
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        messages = list(row["messages"])
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()  # keep the prompt turns, drop the gold answer
        kind = row["kind"]
        items.append(EvalItem(
            id=str(row["id"]), benchmark="demo", question=row["question"], answer=str(row["answer"]).strip(),
            kind=kind, prompt_type="dataset", options=list(row.get("options") or []), images=list(row["images"]),
            category={"answer_type": "open" if kind in ("open", "caption") else "closed"},
            messages=[_clean_message(m) for m in messages],
        ))
    return items, skipped


def _clean_message(message: dict) -> dict:
    """Drop the ``None`` fields ``datasets`` adds when it unifies content-part structs (``text: None`` on images)."""
    content = message["content"]
    if isinstance(content, list):
        content = [{k: v for k, v in part.items() if v is not None} for part in content]
    return {"role": message["role"], "content": content}


def _reject_empty_files(spec: BenchmarkSpec, source: str) -> None:
    """A 0-byte data file (an interrupted copy) makes `datasets` fail with an unrelated message; name it instead."""
    path = Path(source).expanduser()
    if not path.exists():
        return  # a Hub id
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.suffix in _TABLE_SUFFIXES and f.is_file()]
    empty = [str(f) for f in files if f.stat().st_size == 0]
    if empty:
        raise InputFileError(
            f"Benchmark {spec.name!r}: empty data file(s) {empty} in {source}; copy or export the benchmark again."
        )


def load_benchmark(
    name: str, *, data_dir: str | os.PathLike | None = None, source: str | None = None, split: str | None = None,
    limit: int | None = None,
) -> LoadedBenchmark:
    """Items of benchmark ``name`` from ``source`` (default: ``data_dir/<name>`` if present, else its Hub id).

    ``limit`` keeps the first ``limit`` items (after skipping unscorable ones): a quick run is a prefix of a full one.
    """
    spec = BENCHMARKS[resolve_benchmark_names(name)[0]]
    source = source or _resolve_source(spec, data_dir)
    _reject_empty_files(spec, source)
    split = split or spec.split
    if spec.reader == "demo":
        items, skipped = _load_demo(source, split or "eval")
    else:

        records = READERS[spec.reader](source, split=split, **spec.reader_kwargs)
        items, skipped = [], {}
        for record in records:
            item = _record_to_item(spec, record)
            if isinstance(item, str):
                skipped[item] = skipped.get(item, 0) + 1
            else:
                items.append(item)
    if skipped:
        logger.warning("%s: skipped %s", spec.name, skipped)
    if not items:
        raise InputFileError(
            f"Benchmark {spec.name!r} has no scorable items in {source} (split {split!r}"
            f"{f', skipped: {skipped}' if skipped else ''}); check that the folder holds the benchmark's data files."
        )
    if limit is not None:
        items = items[:limit]
    return LoadedBenchmark(spec=spec, items=items, source=source, skipped=skipped)
