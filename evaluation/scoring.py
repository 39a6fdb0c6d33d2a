"""Per-item scoring and per-benchmark metrics.

Default scoring goes through :mod:`infimed.core.answers` (the module the RL rewards use). An answer that cannot
be read is wrong *and* counted as ``unparsed``; an item the LLM judge could not score is ``unjudged`` and left out of
the accuracy it would have entered, never counted right or wrong. ``compat=True`` swaps in MedEvalKit's scoring
(:mod:`infimed.evaluation.compat`) for side-by-side numbers.

Every metric is a fraction in [0, 1]. Accuracy is over scored items (all items minus unjudged ones).
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Iterable

from infimed.core.answers import extract_final_answer, normalize_answer, score_answer, token_prf
from infimed.core.tasks import OPEN_KINDS, TEXT_KINDS, QuestionKind

from .items import EvalItem

__all__ = ["aggregate_metrics", "chance_accuracy", "score_item"]


def score_item(
    item: EvalItem, prediction: str | None, *, compat: bool = False, rng: random.Random | None = None
) -> dict:
    """One ``predictions.jsonl`` record (without the prompt): extraction, correctness and open-answer metrics."""
    prediction = prediction or ""
    match = score_answer(prediction, item.answer, item.kind, item.options or None, question=item.question)
    record = {
        "id": item.id,
        "benchmark": item.benchmark,
        "kind": item.kind,
        "category": dict(item.category),
        "gold": item.answer,
        "options": list(item.options),
        "prediction": prediction,
        "extracted": match.extracted,
        "parsed": match.parsed,
        "correct": match.correct,
    }
    if item.kind in TEXT_KINDS:
        answer = extract_final_answer(prediction)
        precision, recall, f1 = token_prf(answer, item.answer)
        norm = normalize_answer(answer)
        record["open_metrics"] = {
            "exact": float(answer.strip().lower() == item.answer.strip().lower()),
            "normalized_exact": float(bool(norm) and norm == normalize_answer(item.answer)),
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
    if compat:
        from .compat import compat_score_item

        record.update(compat_score_item(item, prediction, rng or random.Random(0)))
    return record


def chance_accuracy(items: Iterable[EvalItem]) -> dict[str, float]:
    """Accuracy of uniform guessing, per kind: 1/2 for yes/no, the mean of 1/len(options) for multiple choice, and
    1/(number of distinct gold answers of that kind) for short/open answers (a guess over the answer vocabulary)."""
    per_kind: dict[str, list[EvalItem]] = defaultdict(list)
    for item in items:
        per_kind[item.kind].append(item)
    chance = {}
    for kind, group in per_kind.items():
        if kind == QuestionKind.YES_NO:
            chance[kind] = 0.5
        elif kind == QuestionKind.MULTIPLE_CHOICE:
            chance[kind] = sum(1 / len(i.options) for i in group) / len(group)
        else:
            chance[kind] = 1 / len({normalize_answer(i.answer) for i in group})
    return chance


def _summary(records: list[dict]) -> dict:
    scored = [r for r in records if r["correct"] is not None]
    out = {
        "num_items": len(records),
        "accuracy": sum(bool(r["correct"]) for r in scored) / len(scored) if scored else 0.0,
        "correct": sum(bool(r["correct"]) for r in scored),
        "unparsed": sum(not r["parsed"] for r in records),
    }
    unjudged = len(records) - len(scored)
    if unjudged:
        out["unjudged"] = unjudged
    return out


def _open_summary(records: list[dict]) -> dict:
    out = _summary(records)
    with_metrics = [r["open_metrics"] for r in records if "open_metrics" in r]
    for name in ("exact", "normalized_exact", "precision", "recall", "f1"):
        out[name] = sum(m[name] for m in with_metrics) / len(with_metrics) if with_metrics else 0.0
    judged = [r for r in records if r.get("judge", {}).get("verdict") is not None]
    if any("judge" in r for r in records):
        out["judge_accuracy"] = sum(r["judge"]["verdict"] == 1 for r in judged) / len(judged) if judged else 0.0
        out["unjudged"] = sum(1 for r in records if "judge" in r and r["judge"].get("verdict") is None)
    return out


def aggregate_metrics(records: list[dict], items: list[EvalItem] | None = None, *, compat: bool = False) -> dict:
    """Benchmark metrics from scored records: overall, closed vs open, per kind, per category value, and chance.

    With ``compat=True`` the MedEvalKit-style numbers are added under ``"medevalkit_compat"`` (the default numbers
    stay, so both can be read side by side).
    """
    metrics = _summary(records)
    metrics["unparsed_rate"] = metrics["unparsed"] / len(records) if records else 0.0
    closed = [r for r in records if r["category"].get("answer_type") == "closed"]
    opened = [r for r in records if r["category"].get("answer_type") == "open"]
    if closed:
        metrics["closed"] = _summary(closed)
    if opened:
        metrics["open"] = _open_summary(opened)
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_kind[r["kind"]].append(r)
    metrics["by_kind"] = {k: (_open_summary(v) if k in OPEN_KINDS else _summary(v)) for k, v in sorted(by_kind.items())}
    if items:
        chance = chance_accuracy(items)
        metrics["chance"] = chance
        for kind, value in chance.items():
            if kind in metrics["by_kind"]:
                metrics["by_kind"][kind]["chance"] = value
    keys = sorted({k for r in records for k in r["category"] if k != "answer_type"})
    for key in keys:
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in records:
            if key in r["category"]:
                groups[str(r["category"][key])].append(r)
        metrics[f"by_{key}"] = {value: _summary(group) for value, group in sorted(groups.items())}
    if compat:
        from .compat import compat_aggregate

        metrics["medevalkit_compat"] = compat_aggregate(records)
    return metrics
