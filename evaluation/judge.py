"""Optional LLM judge for open answers, through the shared chat client (``EvalConfig.judge``, an ``EndpointConfig``:
any OpenAI-compatible endpoint or a local transformers model; see ``infimed.core.endpoints``).

The judge sees the question, the reference answer and the model's extracted answer and replies with
``<judge>1</judge>`` (same meaning) or ``<judge>0</judge>`` (different). Note the polarity: MedEvalKit's own prompt
uses 0 for correct; ours uses 1 for correct, and the prompt text and its hash are written to ``results.json``.
Calls are batched, cached on disk and retried with a bound by the client; a failed call or a reply without a verdict
leaves the item ``unjudged`` (excluded from the judged accuracy and counted), never right or wrong.

With ``compat=True`` the items MedEvalKit judges (VQA-RAD and PathVQA open items, every SLAKE item) are also sent with
MedEvalKit's own comparison prompt (``MEDEVALKIT_JUDGE_PROMPT``, word for word, 0 = correct) and its inputs; that
verdict goes to ``record["compat"]["judge"]`` and only the compat numbers read it.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from infimed.core.tasks import OPEN_KINDS

from .compat import compat_judge_correct, compat_judge_request

if TYPE_CHECKING:
    from infimed.core.llm_client import ChatClient

    from .items import EvalItem

__all__ = [
    "JUDGE_PROMPT", "MEDEVALKIT_JUDGE_PROMPT", "apply_judge", "judge_identity", "judge_messages",
    "medevalkit_judge_messages", "needs_judge", "parse_verdict",
]

JUDGE_PROMPT = """You grade answers to medical questions about images.
Decide whether the candidate answer means the same as the reference answer for this question. Synonyms, a more
specific correct term, or a different wording of the same finding count as the same; a different finding, a wrong
side or location, or an answer that hedges between several options counts as different.

Question: {question}
Reference answer: {reference}
Candidate answer: {candidate}

Think briefly, then end with exactly one verdict tag: <judge>1</judge> if the candidate is correct, <judge>0</judge>
if it is not."""

# MedEvalKit's comparison prompt (``get_compare_messages``), word for word: its leading newline and the four spaces
# before the closing quote included. Note its polarity, the reverse of ours: 0 = correct.
MEDEVALKIT_JUDGE_PROMPT = (
    "\nYour task is to determine whether the user's answer is correct based on the provided questions and standard "
    "answers (for example, if the user expresses a similar meaning to the standard answer, or another interpretation "
    "of the standard answer, it is considered correct.)\n\nThe question is: {question}\n\nThe standard answer: "
    "{answer}\n\nThe user's answer: {response}\n\nPlease strictly follow the following format for output(0 "
    "represents correct, 1 represents incorrect):\n<think>{{your concise think step}}</think>\n<judge>{{0/1}}</judge>"
    "\n\nfor example:\n<think>The standard answer is right, and the user's answer is right frontal lobe, they "
    "express the same meaning, so it is correct.</think>\n<judge>0</judge>\n    "
)
# MedEvalKit's judge sampling: greedy, up to 4096 tokens.
MEDEVALKIT_JUDGE_PARAMS = {"temperature": 0.0, "max_tokens": 4096}

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


def needs_judge(item: EvalItem) -> bool:
    """Open answers are judged with our prompt (MedEvalKit's judged items, in compat mode: ``compat_judge_request``)."""
    return item.kind in OPEN_KINDS


def judge_messages(question: str, reference: str, candidate: str) -> list[dict]:
    prompt = JUDGE_PROMPT.format(question=question, reference=reference, candidate=candidate or "(empty answer)")
    return [{"role": "user", "content": prompt}]


def medevalkit_judge_messages(question: str, response: str, answer: str) -> list[dict]:
    """MedEvalKit's judge request for one item (one user turn)."""
    return [{"role": "user", "content": MEDEVALKIT_JUDGE_PROMPT.format(question=question, answer=answer,
                                                                        response=response)}]


def judge_identity(client: ChatClient, compat: bool = False) -> dict:
    """What ``results.json`` records: the client identity, the prompt, its hash and the verdict convention (with
    ``compat``, MedEvalKit's prompt and convention too, under ``"medevalkit"``)."""
    out = {
        **client.identity(),
        "prompt": JUDGE_PROMPT,
        "prompt_sha256": hashlib.sha256(JUDGE_PROMPT.encode("utf-8")).hexdigest()[:16],
        "verdict": "<judge>1</judge> = correct, <judge>0</judge> = incorrect",
        "params": JUDGE_PARAMS,
    }
    if compat:
        out["medevalkit"] = {
            "prompt": MEDEVALKIT_JUDGE_PROMPT,
            "prompt_sha256": hashlib.sha256(MEDEVALKIT_JUDGE_PROMPT.encode("utf-8")).hexdigest()[:16],
            "verdict": "<judge> contents exactly 0 = correct; anything else, a failed call included, = incorrect",
            "params": MEDEVALKIT_JUDGE_PARAMS,
        }
    return out


def _apply_medevalkit_judge(client: ChatClient, items: list[EvalItem], records: list[dict]) -> int:
    """MedEvalKit's judge on the items it judges; the verdict goes to ``record["compat"]["judge"]``."""
    todo = []
    for item, rec in zip(items, records):
        request = compat_judge_request(item, rec["prediction"]) if "compat" in rec else None
        if request is not None:
            todo.append((rec, medevalkit_judge_messages(*request)))
    if not todo:
        return 0
    results = client.complete([messages for _, messages in todo], **MEDEVALKIT_JUDGE_PARAMS)
    for (rec, _), result in zip(todo, results):
        reply = result.text if result.error is None else None
        rec["compat"]["judge"] = {"correct": compat_judge_correct(reply), "raw": reply, "error": result.error}
    return len(todo)


def apply_judge(client: ChatClient, items: list[EvalItem], records: list[dict], *, compat: bool = False) -> dict:
    """Judge the records that need it (one batched ``complete`` call) and set their ``correct`` from the verdict.

    Returns counts ``{"judged", "unjudged", "errors": {reason: n}}``. The rule-based result stays in
    ``record["rule_correct"]``.
    """
    medevalkit_judged = _apply_medevalkit_judge(client, items, records) if compat else 0
    todo = [(item, rec) for item, rec in zip(items, records) if needs_judge(item)]
    if not todo:
        return {"judged": 0, "unjudged": 0, "errors": {}, **({"medevalkit_judged": medevalkit_judged} if compat else {})}
    requests = [judge_messages(item.question, item.answer, rec["extracted"] or rec["prediction"]) for item, rec in todo]
    results = client.complete(requests, **JUDGE_PARAMS)
    errors: dict[str, int] = {}
    judged = 0
    for (item, rec), result in zip(todo, results):
        verdict = parse_verdict(result.text) if result.error is None else None
        reason = result.error if result.error is not None else (None if verdict is not None else "no <judge> verdict")
        rec["judge"] = {"verdict": verdict, "raw": result.text, "error": reason}
        rec["rule_correct"] = rec["correct"]
        rec["correct"] = None if verdict is None else verdict == 1
        if verdict is None:
            key = (reason or "unknown").split(":")[0][:80]
            errors[key] = errors.get(key, 0) + 1
        else:
            judged += 1
    out = {"judged": judged, "unjudged": len(todo) - judged, "errors": errors}
    return {**out, "medevalkit_judged": medevalkit_judged} if compat else out
