"""``--medevalkit-compat``: MedEvalKit's scoring, reproduced item by item for side-by-side comparison.

Each function re-implements one of MedEvalKit's rules *including its faults*, read from its source (``utils/utils.py``,
the per-benchmark ``cal_metrics`` and ``utils/MMMU/eval_utils.py``), so a user can tell how much of a published number
comes from the parser rather than the model. The inputs are the source's own strings (``EvalItem.source``), as
MedEvalKit sees them: SLAKE's "Yes", PMC-VQA's "A:MRI " cells, OmniMedVQA's text gold.

==============================  ======================================================================================
MedEvalKit behaviour            reproduced by
==============================  ======================================================================================
"boxed" without ``\\boxed{..}``   :func:`compat_parse`: the whole answer becomes the string "None"
yes/no by substring             :func:`compat_yes_no`: ``"no" in answer``, so "not"/"abnormal"/"know" read as no
SLAKE "Yes"/"No" golds          :func:`compat_score_item`: the yes/no test is case-sensitive, so SLAKE's capitalised
                                golds take exact match (:func:`compat_closed`), never the substring rule
strip before exact match        VQA-RAD and PathVQA strip the response; SLAKE does not
nearest-option fallback         :func:`compat_multiple_choice`: an unreadable answer becomes the most similar option
PMC-VQA raw cells               :func:`compat_choices`: choices are the CSV cells ``"A:MRI "`` (prompt and fallback)
OmniMedVQA text gold            :func:`compat_gold`: a gold that is not exactly an option stays text
MMMU choice parser              :func:`compat_mmmu_choice`: "(X)" candidates, else " X ", else option text in answers
                                over 5 words; the last occurrence wins; nothing found -> a random option (seeded)
MMMU open questions             :func:`compat_mmmu_open`: the raw response is iterated character by character, so a
                                gold of two or more characters (or a number) is never matched: always wrong
open acc divided twice          :func:`compat_aggregate`: open ``accuracy`` = right / total / total
P/R/F1 order                    :func:`compat_open`: a set-token F1 returned as (f1, p, r) but read as (p, r, f1)
judge prompt and polarity       :func:`compat_judge_request` / :func:`compat_judge_correct`: MedEvalKit's comparison
                                prompt, ``<judge>0</judge>`` = correct, anything else (a failure included) wrong
judge: PathVQA closed = 0       :func:`compat_aggregate`: with a judge, PathVQA closed right is reset to 0
judge: SLAKE closed twice       :func:`compat_aggregate`: SLAKE's closed items are judged too and counted twice
empty open answer crash         NOT reproduced: MedEvalKit raises (its F1 returns a bare 0 that its caller unpacks);
                                here the item scores 0 and is counted under ``not_reproduced``
==============================  ======================================================================================

The default scoring (:mod:`infimed.evaluation.scoring`) has none of these. The compat numbers go under
``metrics["medevalkit_compat"]`` next to the correct ones.
"""

from __future__ import annotations

import difflib
import random

from infimed.core.tasks import QuestionKind, option_letters

from .items import EvalItem

__all__ = [
    "NOT_REPRODUCED",
    "compat_aggregate",
    "compat_choices",
    "compat_closed",
    "compat_gold",
    "compat_judge_correct",
    "compat_judge_request",
    "compat_mmmu_choice",
    "compat_mmmu_open",
    "compat_multiple_choice",
    "compat_open",
    "compat_parse",
    "compat_score_item",
    "compat_yes_no",
    "medevalkit_boxed",
    "medevalkit_tag",
]

# What compat cannot reproduce, listed in results.json (metrics["medevalkit_compat"]["not_reproduced"]).
NOT_REPRODUCED = {
    "empty_open_answer_crash": "MedEvalKit raises on an open answer with no tokens after parsing (its F1 helper "
                               "returns a bare 0 that the caller unpacks into three values); compat scores it 0.",
}

# Markers after which MedEvalKit keeps only the remaining text (applied in this order, each on the previous result).
_ANSWER_MARKERS = (
    "**answer**:", "**answer**", "*answer*:", "**answer:**", "answer is", "answer:", "答案:", "final answer",
    "final answer is",
)
# Benchmarks whose MedEvalKit scorer takes the <answer> contents before its choice parser (PMC-VQA does not).
_ANSWER_TAG_FIRST = ("omnimedvqa", "medxpertqa_mm", "medqa", "medmcqa", "pubmedqa")


def medevalkit_boxed(text: str) -> str:
    """The stripped contents of the last ``\\boxed{...}`` with balanced braces, or the string ``"None"`` when there
    is none or it is not closed (``mathruler``'s ``extract_boxed_content``, which MedEvalKit calls)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return "None"
    depth, body = 0, text[start + len("\\boxed{"):]
    for i, char in enumerate(body):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == -1:
            return body[:i].strip()
    return "None"


def medevalkit_tag(text: str | None, tag: str = "answer") -> str:
    """Every ``<tag>...</tag>`` body joined by spaces; the whole text when there is none ("" for no text)."""
    if not text:
        return ""
    opening, closing = f"<{tag}>", f"</{tag}>"
    parts, start = [], text.find(opening)
    while start != -1:
        end = text.find(closing, start + len(opening))
        if end == -1:
            break
        parts.append(text[start + len(opening):end])
        start = text.find(opening, end + len(closing))
    found = " ".join(parts).strip() if parts else ""
    return found or text


def compat_parse(response: str) -> str:
    """MedEvalKit's ``parse_response``: lowercase; if "boxed" occurs anywhere, the last closed ``\\boxed{}`` contents,
    else the string "None" (a truncated ``\\boxed{b`` or "the boxed region" lose the whole answer); else the
    ``<answer>`` contents; then the text after each answer marker."""
    response = (response or "").lower()
    if "boxed" in response:
        response = medevalkit_boxed(response)
    elif "<answer>" in response:
        response = medevalkit_tag(response)
    for marker in _ANSWER_MARKERS:
        if marker in response:
            response = response.split(marker)[-1]
    return response


def compat_yes_no(gold: str, response: str) -> bool:
    """Substring test: right when exactly one of "yes"/"no" occurs *anywhere* and the gold word occurs."""
    text = compat_parse(response).replace("\n", "").replace(".", "")
    return (("yes" in text) != ("no" in text)) and gold.lower() in text


def compat_closed(gold: str, response: str) -> bool:
    """Exact match after lowercasing and deleting dots and newlines (no stripping, no other normalisation)."""
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
    """Exact match of the lowercased parsed text (unstripped) and the set-token P/R/F1 with F1 read as precision."""
    text = compat_parse(response)
    precision, recall, f1 = _set_f1_in_wrong_order(text, gold)
    return {"em": float(text == gold.lower()), "precision": precision, "recall": recall, "f1": f1,
            "crash": not text.split() or not gold.split()}


def compat_choices(item: EvalItem) -> list[str]:
    """The option strings MedEvalKit prompts with and compares against: PMC-VQA's raw CSV cells (``"A:MRI "``, all
    four), PubMedQA's ``"A.yes"``, everywhere else ``"A. text"``."""
    source_options = item.source.get("options")
    if item.benchmark == "pmc_vqa" and source_options:
        return [str(cell) for cell in source_options]
    options = [str(o) for o in (source_options or item.options)]
    sep = "." if item.benchmark == "pubmedqa" else ". "
    return [f"{letter}{sep}{text}" for letter, text in zip(option_letters(len(options)), options)]


def compat_gold(item: EvalItem) -> str:
    """The gold MedEvalKit compares with: the source's own label; OmniMedVQA's text gold becomes a letter only when
    it equals an option exactly (the last such option), otherwise it stays text."""
    raw = item.source.get("answer")
    if raw is None or raw == "":
        return item.answer
    raw = str(raw)
    if item.benchmark == "omnimedvqa":
        letters = option_letters(len(item.source.get("options") or item.options))
        matches = [l for l, o in zip(letters, item.source.get("options") or item.options) if o == raw]
        return matches[-1] if matches else raw
    return raw


def compat_multiple_choice(choices: list[str], gold: str, response: str) -> tuple[bool, str | None, str | None]:
    """MedEvalKit's ``judge_multi_choice``: ``(correct, letter read, fallback)``. The head of the parsed answer (before
    the first "." and after the last ":") is compared with the gold, a letter, then a whole choice; anything else
    falls back to the choice most similar to the whole answer (the first on ties, choice A when nothing is similar)."""
    alphas = [chr(ord("a") + i) for i in range(len(choices))]
    text = (response or "").lower()
    if text.split("\n\n")[0] in alphas:
        text = text.split("\n\n")[0]
    elif text.split("\n\n")[-1].split(".")[0] in alphas:
        text = text.split("\n\n")[-1].split(".")[0]
    text = compat_parse(text).strip().lower().replace("\n", "")
    lowered = [c.lower() for c in choices]
    head = text.split(".")[0].split(":")[-1]
    answer = gold.strip().lower()
    if head == answer:
        return True, head.upper() if head in alphas else None, None
    if head in alphas:
        return lowered[alphas.index(head)] == answer, head.upper(), None
    if head in lowered:
        letter = alphas[lowered.index(head)]
        return answer in alphas and head == lowered[alphas.index(answer)], letter.upper(), None
    best, best_score = 0, 0.0
    for i, choice in enumerate(lowered):
        score = difflib.SequenceMatcher(None, choice, text).ratio()
        if score > best_score:
            best, best_score = i, score
    return alphas[best] == answer or lowered[best] == answer, alphas[best].upper(), "nearest_option"


def compat_mmmu_choice(response: str, options: list[str], rng: random.Random) -> tuple[str, str | None]:
    """MMMU's ``parse_multi_choice_response``: ``(letter, fallback)``. Candidates are the letters written "(X)"; if
    none, those written " X "; if none and the answer has over 5 words, the options whose text occurs; the last
    occurrence wins; nothing found -> a random letter (``rng``, seeded by the run)."""
    letters = option_letters(len(options))
    text = response or ""
    if "<answer>" in text:
        text = medevalkit_tag(text)
    elif "\\boxed" in text:
        text = medevalkit_boxed(text)
    text = text.strip()
    for char in ",.!?;:'":
        text = text.strip(char)
    text = f" {text} "
    candidates = [l for l in letters if f"({l})" in text]
    pattern = "({})" if candidates else " {} "
    if not candidates:
        candidates = [l for l in letters if f" {l} " in text]
    by_text = False
    if not candidates and len(text.split()) > 5:
        candidates = [l for l, option in zip(letters, options) if option.lower() in text.lower()]
        by_text = bool(candidates)
    if not candidates:
        return rng.choice(letters), "random_option"
    if len(candidates) == 1:
        return candidates[0], None
    if by_text:
        positions = [text.lower().rfind(options[letters.index(c)].lower()) for c in candidates]
    else:
        positions = [text.rfind(pattern.format(c)) for c in candidates]
    return candidates[positions.index(max(positions))], None


def _mmmu_normalize(value: str) -> list:
    value = value.strip()
    try:
        return [round(float(value.replace(",", "")), 2)]
    except ValueError:
        value = value.lower()
        return [" " + value, value + " "] if len(value) == 1 else [value]


def compat_mmmu_open(gold: str, response: str) -> bool:
    """MMMU validation open questions as MedEvalKit scores them: its parsed prediction is the raw response string,
    which the matcher iterates as if it were a list, i.e. one character at a time. A gold of two or more characters
    never fits in one character, a numeric gold is a float and never compared: always wrong (an empty gold would
    match any non-empty answer)."""
    golds = _mmmu_normalize(gold)
    return any(isinstance(g, str) and g in char for char in (response or "") for g in golds)


def _vqa_response(prediction: str) -> str:
    """The first step of the VQA-RAD / PathVQA / SLAKE scorers: the closed ``\\boxed{}`` contents, else the
    ``<answer>`` contents, else the response as is."""
    boxed = medevalkit_boxed(prediction)
    if boxed != "None":
        return boxed
    return medevalkit_tag(prediction) if "<answer>" in prediction else prediction


def _family(benchmark: str) -> str:
    for name in ("vqa_rad", "path_vqa", "slake", "mmmu"):
        if benchmark.startswith(name):
            return name
    return benchmark


def compat_score_item(item: EvalItem, prediction: str, rng: random.Random) -> dict:
    """``{"compat": {...}}`` for one item, scored by the rule MedEvalKit's scorer for its benchmark applies.

    ``bucket`` is MedEvalKit's ``close``/``open`` split (VQA-RAD and PathVQA decide it from the gold, SLAKE from its
    ``answer_type``).
    """
    prediction = prediction or ""
    family, gold = _family(item.benchmark), compat_gold(item)
    out: dict = {"correct": False, "extracted": None, "fallback": None,
                 "bucket": item.category.get("answer_type", "closed")}
    if family == "mmmu":
        response = medevalkit_tag(prediction) if "<answer>" in prediction else prediction
        boxed = medevalkit_boxed(response)
        response = response if boxed == "None" else boxed
        if item.kind == QuestionKind.MULTIPLE_CHOICE:
            options = [str(o) for o in (item.source.get("options") or item.options)]
            letter, fallback = compat_mmmu_choice(response, options, rng)
            out.update(correct=letter == gold, extracted=letter, fallback=fallback)
        else:
            out["correct"] = compat_mmmu_open(gold, response)
    elif item.kind == QuestionKind.MULTIPLE_CHOICE:
        response = medevalkit_tag(prediction) if item.benchmark in _ANSWER_TAG_FIRST else prediction
        correct, letter, fallback = compat_multiple_choice(compat_choices(item), gold, response)
        out.update(correct=correct, extracted=letter, fallback=fallback)
    elif family in ("vqa_rad", "path_vqa"):
        # Both lowercase and strip the gold and the response before the yes/no or exact-match rule.
        gold, response = gold.lower().strip(), _vqa_response(prediction).lower().strip()
        out["bucket"] = "closed" if gold in ("yes", "no") else "open"
        if out["bucket"] == "closed":
            out["correct"] = compat_yes_no(gold, response)
        else:
            out.update(_open_result(gold, response))
    elif family == "slake":
        # No lowercasing or stripping first, and the yes/no test is case-sensitive: "Yes"/"No" take exact match.
        response = _vqa_response(prediction)
        if out["bucket"] == "open":
            out.update(_open_result(gold, response))
        else:
            out["correct"] = compat_yes_no(gold, response) if gold in ("yes", "no") else compat_closed(gold, response)
    elif item.kind == QuestionKind.YES_NO:
        out["correct"] = compat_yes_no(gold, prediction)
    elif out["bucket"] == "closed":
        out["correct"] = compat_closed(gold, prediction)
    else:
        out.update(_open_result(gold, prediction))
    return {"compat": out}


def _open_result(gold: str, response: str) -> dict:
    metrics = compat_open(gold, response)
    crash = metrics.pop("crash")
    return {"correct": bool(metrics["em"]), "open_metrics": metrics, **({"not_reproduced": "empty_open_answer_crash"}
                                                                         if crash else {})}


def compat_judge_request(item: EvalItem, prediction: str) -> tuple[str, str, str] | None:
    """``(question, response, answer)`` as MedEvalKit sends them to its judge, or None when it judges no such item:
    VQA-RAD and PathVQA judge their open items (response and gold lowercased and stripped), SLAKE every item (as
    parsed, case kept). Other benchmarks have no judge."""
    family, gold = _family(item.benchmark), compat_gold(item)
    question = str(item.source.get("question") or item.question)
    response = _vqa_response(prediction or "")
    if family in ("vqa_rad", "path_vqa"):
        gold = gold.lower().strip()
        return None if gold in ("yes", "no") else (question, response.lower().strip(), gold)
    if family == "slake":
        return question, response, gold
    return None


def compat_judge_correct(reply: str | None) -> bool:
    """MedEvalKit's verdict: the ``<judge>`` contents (the whole reply when it has none) must be exactly "0"; a failed
    call, "1", or two tags ("0 0") are all wrong."""
    return medevalkit_tag(reply, "judge") == "0"


def compat_aggregate(records: list[dict]) -> dict:
    """MedEvalKit's ``total`` / ``close`` / ``open`` metrics from records scored with ``compat=True``.

    Judge verdicts (``record["compat"]["judge"]``, MedEvalKit's prompt; records judged only with our prompt fall back
    to ``record["judge"]``) are applied MedEvalKit's way: an unjudged item is wrong; PathVQA's closed right count is
    reset to 0; SLAKE's closed items are judged too and their judged rights added to the rule-based ones, so they
    count twice.
    """
    benchmark = records[0]["benchmark"] if records else ""
    total = {"total": len(records), "right": 0}
    close = {"total": 0, "right": 0}
    opened = {"total": 0, "right": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "em": 0.0}
    for r in records:
        c = r["compat"]
        is_open = c.get("bucket", r["category"].get("answer_type")) == "open"
        bucket = opened if is_open else close
        bucket["total"] += 1
        if c["correct"]:
            bucket["right"] += 1
            total["right"] += 1
        for name in ("precision", "recall", "f1", "em"):
            if is_open and "open_metrics" in c:
                opened[name] += c["open_metrics"][name]
    verdicts = [(r, _judged_correct(r)) for r in records]
    if any(v is not None for _, v in verdicts):
        opened["right"] = 0
        if benchmark.startswith("path_vqa"):
            close["right"] = 0
        total["right"] = close["right"]
        for r, correct in verdicts:
            if not correct:
                continue
            if r["compat"].get("bucket", r["category"].get("answer_type")) == "open":
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
    crashes = sum(r["compat"].get("not_reproduced") == "empty_open_answer_crash" for r in records)
    out["not_reproduced"] = {name: {"items": crashes, "why": why} for name, why in NOT_REPRODUCED.items()}
    return out


def _judged_correct(record: dict) -> bool | None:
    """The judge's verdict on a record (None: not judged)."""
    if "judge" in record["compat"]:
        return bool(record["compat"]["judge"]["correct"])
    if "judge" in record:
        return record["judge"].get("verdict") == 1
    return None
