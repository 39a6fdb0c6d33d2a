"""Optional LLM judge for open answers, through the shared chat client (``EvalConfig.judge``, an ``EndpointConfig``:
any OpenAI-compatible endpoint or a local transformers model; see ``infimed.core.endpoints``).

The judge sees the question, the reference answer and the model's extracted answer and replies with
``<judge>1</judge>`` (same meaning) or ``<judge>0</judge>`` (different). Note the polarity: MedEvalKit's own prompt
uses 0 for correct; ours uses 1 for correct, and the prompt text and its hash are written to ``results.json``.
Calls are batched, cached on disk and retried with a bound by the client; a failed call or a reply without a verdict
leaves the item ``unjudged`` (excluded from the judged accuracy and counted), never right or wrong.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from infimed.core.tasks import OPEN_KINDS

if TYPE_CHECKING:
    from infimed.core.llm_client import ChatClient

    from .items import EvalItem

__all__ = ["JUDGE_PROMPT", "apply_judge", "judge_identity", "judge_messages", "needs_judge", "parse_verdict"]

JUDGE_PROMPT = """You grade answers to medical questions about images.
Decide whether the candidate answer means the same as the reference answer for this question. Synonyms, a more
specific correct term, or a different wording of the same finding count as the same; a different finding, a wrong
side or location, or an answer that hedges between several options counts as different.

Question: {question}
Reference answer: {reference}
Candidate answer: {candidate}

Think briefly, then end with exactly one verdict tag: <judge>1</judge> if the candidate is correct, <judge>0</judge>
if it is not."""

_VERDICT = re.compile(r"<judge>\s*([01])\s*</judge>")
# Judge sampling: greedy for reproducible verdicts; 512 tokens leaves room for a short rationale before the tag.
JUDGE_PARAMS = {"temperature": 0.0, "max_tokens": 512}


def parse_verdict(text: str | None) -> int | None:
    """The last ``<judge>0|1</judge>`` verdict in ``text``, or None.

    >>> parse_verdict("same organ <judge>1</judge>")
    1
    >>> parse_verdict("<judge>yes</judge>") is None
    True
    """
    found = _VERDICT.findall(text or "")
    return int(found[-1]) if found else None


def needs_judge(item: EvalItem, compat: bool = False) -> bool:
    """Open answers are judged; in compat mode SLAKE's closed items are judged too, as MedEvalKit does."""
    return item.kind in OPEN_KINDS or (compat and item.benchmark.startswith("slake"))


def judge_messages(question: str, reference: str, candidate: str) -> list[dict]:
    prompt = JUDGE_PROMPT.format(question=question, reference=reference, candidate=candidate or "(empty answer)")
    return [{"role": "user", "content": prompt}]


def judge_identity(client: ChatClient) -> dict:
    """What ``results.json`` records: the client identity, the prompt, its hash and the verdict convention."""
    return {
        **client.identity(),
        "prompt": JUDGE_PROMPT,
        "prompt_sha256": hashlib.sha256(JUDGE_PROMPT.encode("utf-8")).hexdigest()[:16],
        "verdict": "<judge>1</judge> = correct, <judge>0</judge> = incorrect",
        "params": JUDGE_PARAMS,
    }


def apply_judge(client: ChatClient, items: list[EvalItem], records: list[dict], *, compat: bool = False) -> dict:
    """Judge the records that need it (one batched ``complete`` call) and set their ``correct`` from the verdict.

    Returns counts ``{"judged", "unjudged", "errors": {reason: n}}``. The rule-based result stays in
    ``record["rule_correct"]``.
    """
    todo = [(item, rec) for item, rec in zip(items, records) if needs_judge(item, compat)]
    if not todo:
        return {"judged": 0, "unjudged": 0, "errors": {}}
    requests = [judge_messages(item.question, item.answer, rec["extracted"] or rec["prediction"]) for item, rec in todo]
    results = client.complete(requests, **JUDGE_PARAMS)
    errors: dict[str, int] = {}
    judged = 0
    for (item, rec), result in zip(todo, results):
        verdict = parse_verdict(result.text) if result.error is None else None
        reason = result.error if result.error is not None else (None if verdict is not None else "no <judge> verdict")
        rec["judge"] = {"verdict": verdict, "raw": result.text, "error": reason}
        rec["rule_correct"] = rec["correct"]
        # Closed items judged only for compat keep their rule-based default score; open items take the verdict.
        if item.kind in OPEN_KINDS:
            rec["correct"] = None if verdict is None else verdict == 1
        if verdict is None:
            key = (reason or "unknown").split(":")[0][:80]
            errors[key] = errors.get(key, 0) + 1
        else:
            judged += 1
    return {"judged": judged, "unjudged": len(todo) - judged, "errors": errors}
