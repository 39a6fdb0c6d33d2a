"""``--medevalkit-compat``: MedEvalKit's scoring behaviour, reproduced for side-by-side comparison only.

Each function re-implements one of MedEvalKit's scoring rules *including its faults*,
so a user can tell how much of a published number comes from the parser rather than the model:

==========================  ==========================================================================================
pitfall                     reproduced by
==========================  ==========================================================================================
nearest-option fallback     :func:`compat_multiple_choice`: an unreadable answer becomes the most similar option
MMMU random option          :func:`compat_mmmu_choice`: an unreadable MMMU answer becomes a random option (seeded)
substring yes/no            :func:`compat_yes_no`: ``"no" in answer``, so "not"/"abnormal"/"know" read as no
open acc divided twice      :func:`compat_aggregate`: open ``accuracy`` = right / total / total
P/R/F1 order                :func:`compat_open`: a set-token F1 returned as (f1, p, r) but read as (p, r, f1)
judge: PathVQA closed = 0   :func:`compat_aggregate`: with judge verdicts, PathVQA closed right is reset to 0
judge: SLAKE closed twice   :func:`compat_aggregate`: with judge verdicts, SLAKE closed items are counted twice
judge failure = wrong       :func:`compat_aggregate`: an unjudged item counts as wrong
empty answer crash          not reproduced: a crash gives no number to compare; empty answers score as wrong here
==========================  ==========================================================================================

The default scoring (:mod:`infimed.evaluation.scoring`) has none of these; tests show each one absent there and
present here. The compat numbers go under ``metrics["medevalkit_compat"]`` next to the correct ones.
"""

from __future__ import annotations

import difflib
import random
import re

from infimed.core.prompts import OPTION_FORMATS
from infimed.core.tasks import QuestionKind, option_letters

from .items import EvalItem

__all__ = [
    "compat_aggregate",
    "compat_closed",
    "compat_mmmu_choice",
    "compat_multiple_choice",
    "compat_open",
    "compat_parse",
    "compat_score_item",
    "compat_yes_no",
]

# Markers after which MedEvalKit keeps only the remaining text (applied in this order, each on the previous result).
_ANSWER_MARKERS = (
    "**answer**:", "**answer**", "*answer*:", "**answer:**", "answer is", "answer:", "答案:", "final answer",
    "final answer is",
)


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def compat_parse(response: str) -> str:
    """MedEvalKit's answer parsing: lowercase, boxed or ``<answer>`` contents, then text after answer markers."""
    response = (response or "").lower()
    boxed = _last_boxed(response) if "boxed" in response else None
    if boxed is not None:
        response = boxed
    elif "<answer>" in response:
        parts = re.findall(r"<answer>(.*?)</answer>", response, re.DOTALL)
        response = " ".join(parts).strip() if parts else response
    for marker in _ANSWER_MARKERS:
        if marker in response:
            response = response.split(marker)[-1]
    return response


def compat_yes_no(gold: str, response: str) -> bool:
    """Substring test: right when exactly one of "yes"/"no" occurs *anywhere* and the gold word occurs."""
    text = compat_parse(response).replace("\n", "").replace(".", "")
    gold = gold.lower()
    return (("yes" in text) != ("no" in text)) and gold in text


def compat_closed(gold: str, response: str) -> bool:
    """Exact match after lowercasing and deleting dots and newlines (no other normalisation)."""
    return compat_parse(response).replace("\n", "").replace(".", "") == gold.lower()


def _set_f1_in_wrong_order(prediction: str, gold: str) -> tuple[float, float, float]:
    pred, ref = set(prediction.lower().split()), set(gold.lower().split())
    common = pred & ref
    if not pred or not ref or not common:
        return 0.0, 0.0, 0.0
    precision, recall = len(common) / len(pred), len(common) / len(ref)
    f1 = 2 * precision * recall / (precision + recall)
    return f1, precision, recall  # MedEvalKit returns this order and its caller reads (precision, recall, f1)


def compat_open(gold: str, response: str) -> dict:
    """Exact match of the lowercased parsed text and the set-token P/R/F1 with F1 reported as precision."""
    text = compat_parse(response)
    precision, recall, f1 = _set_f1_in_wrong_order(text, gold)
    return {"em": float(text == gold.lower()), "precision": precision, "recall": recall, "f1": f1}


def _displayed_options(item: EvalItem) -> list[str]:
    fmt = OPTION_FORMATS[item.option_format]
    raws = item.raw_options or item.options
    return [
        fmt.format(letter=l, text=t, raw=r) for l, t, r in zip(option_letters(len(item.options)), item.options, raws)
    ]


def compat_multiple_choice(item: EvalItem, response: str) -> tuple[bool, str | None, str | None]:
    """``(correct, letter, fallback)``; an unreadable answer falls back to the most similar option text."""
    letters = [c.lower() for c in option_letters(len(item.options))]
    choices = [c.lower() for c in _displayed_options(item)]
    gold = item.answer.strip().lower()
    text = (response or "").lower()
    paragraphs = text.split("\n\n")
    if paragraphs[0] in letters:
        text = paragraphs[0]
    elif paragraphs[-1].split(".")[0] in letters:
        text = paragraphs[-1].split(".")[0]
    text = compat_parse(text).strip().replace("\n", "")
    head = text.split(".")[0].split(":")[-1]
    if head == gold or head in letters:
        return head == gold, head.upper() if head in letters else None, None
    if head in choices:
        letter = letters[choices.index(head)]
        return letter == gold, letter.upper(), None
    scores = [difflib.SequenceMatcher(None, choice, text).ratio() for choice in choices]
    best = max(range(len(choices)), key=lambda i: (scores[i], -i)) if any(scores) else 0
    return letters[best] == gold, letters[best].upper(), "nearest_option"


def compat_mmmu_choice(item: EvalItem, response: str, rng: random.Random) -> tuple[bool, str | None, str | None]:
    """MMMU's parser: "(A)" / " A " (case-sensitive), else option text in a long answer; the last one mentioned
    wins; nothing found -> a random option (seeded)."""
    letters = option_letters(len(item.options))
    text = response or ""
    tags = re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
    text = " ".join(tags) if tags else text
    boxed = _last_boxed(text)
    text = " " + (boxed if boxed is not None else text).strip(" ,.!?;:'") + " "
    positions: dict[str, int] = {}
    for letter in letters:
        for pattern in (f"({letter})", f" {letter} ", f" {letter}."):
            pos = text.rfind(pattern)
            if pos >= 0:
                positions[letter] = max(positions.get(letter, -1), pos)
    if not positions and len(text.split()) > 5:
        for letter, option in zip(letters, item.options):
            pos = text.lower().rfind(option.lower())
            if pos >= 0:
                positions[letter] = pos
    if not positions:
        letter = rng.choice(letters)
        return letter == item.answer.upper(), letter, "random_option"
    letter = max(positions, key=positions.get)
    return letter == item.answer.upper(), letter, None


def compat_score_item(item: EvalItem, prediction: str, rng: random.Random) -> dict:
    """``{"compat": {...}}`` for one item, using the MedEvalKit rule its benchmark and kind would get."""
    out: dict = {"correct": False, "extracted": None, "fallback": None}
    if item.kind == QuestionKind.MULTIPLE_CHOICE:
        scorer = compat_mmmu_choice if item.benchmark.startswith("mmmu") else None
        correct, letter, fallback = (
            scorer(item, prediction, rng) if scorer else compat_multiple_choice(item, prediction)
        )
        out.update(correct=correct, extracted=letter, fallback=fallback)
    elif item.kind == QuestionKind.YES_NO and item.answer.lower() in ("yes", "no"):
        out["correct"] = compat_yes_no(item.answer, prediction)
    elif item.kind in (QuestionKind.YES_NO, QuestionKind.CLOSED) and item.category.get("answer_type") == "closed":
        out["correct"] = compat_closed(item.answer, prediction)
    else:
        metrics = compat_open(item.answer, prediction)
        out.update(correct=bool(metrics["em"]), open_metrics=metrics)
    return {"compat": out}


def compat_aggregate(records: list[dict]) -> dict:
    """MedEvalKit's ``total`` / ``close`` / ``open`` metrics from records scored with ``compat=True``.

    Judge verdicts (``record["judge"]``) are applied MedEvalKit's way: an unjudged item is wrong; PathVQA's closed
    right count is reset to 0; SLAKE's closed items are judged too and their judged rights added to the rule-based
    ones, so they count twice.
    """
    benchmark = records[0]["benchmark"] if records else ""
    judged = any("judge" in r for r in records)
    total = {"total": len(records), "right": 0}
    close = {"total": 0, "right": 0}
    opened = {"total": 0, "right": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "em": 0.0}
    for r in records:
        c = r["compat"]
        is_open = r["category"].get("answer_type") == "open"
        bucket = opened if is_open else close
        bucket["total"] += 1
        if c["correct"]:
            bucket["right"] += 1
            total["right"] += 1
        for name in ("precision", "recall", "f1", "em"):
            if is_open and "open_metrics" in c:
                opened[name] += c["open_metrics"][name]
    if judged:
        verdict = {id(r): r.get("judge", {}).get("verdict") == 1 for r in records}
        opened["right"] = 0
        if benchmark.startswith("path_vqa"):
            close["right"] = 0
        total["right"] = close["right"]
        for r in records:
            if "judge" not in r or not verdict[id(r)]:
                continue
            if r["category"].get("answer_type") == "open":
                opened["right"] += 1
            else:
                close["right"] += 1
            total["right"] += 1
    total["accuracy"] = total["right"] / total["total"] if total["total"] else 0.0
    close["accuracy"] = close["right"] / close["total"] if close["total"] else 0.0
    if opened["total"]:
        opened["accuracy"] = opened["right"] / opened["total"]
        for name in ("accuracy", "precision", "recall", "f1", "em"):
            opened[name] /= opened["total"]  # "accuracy" included: divided by the total a second time
    out = {"total": total, "close": close, "open": opened}
    out["fallbacks"] = {
        name: sum(r["compat"].get("fallback") == name for r in records) for name in ("nearest_option", "random_option")
    }
    return out
