"""Model scorer for dimensions 3 (image-text alignment) and 4 (medical relevance and knowledge density).

One request per sample asks a judge (a ``JudgeConfig`` endpoint, built by ``infimed.core.endpoints.make_client``:
an OpenAI-compatible endpoint or a local transformers model) to grade the enabled dimensions on a 1-5 rubric and
answer with JSON only, e.g. ``{"alignment": 4, "medical_relevance": 5, "rationale": "..."}``. Scores are mapped to
[0, 1] with ``rubric_to_unit``. Anything else (an HTTP failure, no JSON, a missing key, a value outside 1-5) leaves
the sample unscored with the reason, which the pipeline counts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from infimed.core.llm_client import image_part

from .dimensions import rubric_to_unit
from .rules import message_texts

__all__ = ["RUBRIC", "JudgeVerdict", "build_judge_request", "parse_verdict", "JudgeScorer"]

RUBRIC = {
    "alignment": (
        "alignment: does the text (question and answer) refer to what the image(s) actually show?\n"
        "  1 = unrelated to the image; 2 = mostly unrelated; 3 = plausibly related but generic;\n"
        "  4 = clearly about this image; 5 = precisely grounded in visible findings."
    ),
    "medical_relevance": (
        "medical_relevance: how much correct, useful medical knowledge does the sample carry?\n"
        "  1 = not medical; 2 = medical topic but trivial or wrong; 3 = basic medical fact;\n"
        "  4 = clinically useful knowledge; 5 = dense, expert-level, correct clinical content."
    ),
}

_SYSTEM = (
    "You grade training samples for a medical vision-language model. Be strict and consistent. Reply with one JSON "
    "object only, no prose outside it."
)
_JSON_OBJECT = re.compile(r"\{.*?\}", re.S)


@dataclass
class JudgeVerdict:
    scores: dict[str, float] | None
    error: str | None = None
    rationale: str | None = None
    detail: str | None = None  # the client's error message, or the start of an unusable reply


def _sample_text(row: dict) -> str:
    turns = message_texts(row.get("messages"))
    lines = [f"{role}: {text}" for role, text in turns if isinstance(text, str)]
    if row.get("options"):
        lines.append(f"(gold answer: {row.get('answer')})")
    return "\n".join(lines) or f"question: {row.get('question')}\nanswer: {row.get('answer')}"


def build_judge_request(row: dict, dimensions: list[str], images: list | None = None,
                        max_image_side: int = 512) -> list[dict]:
    """OpenAI-style messages for one sample: system rubric, then the images inline and the conversation text."""
    keys = ", ".join(f'"{d}": <1-5>' for d in dimensions)
    rubric = "\n".join(RUBRIC[d] for d in dimensions)
    instruction = (
        f"Grade this sample on:\n{rubric}\n\nSample ({len(images or [])} image(s) attached):\n{_sample_text(row)}\n\n"
        f'Answer with JSON: {{{keys}, "rationale": "<one sentence>"}}'
    )
    parts = []
    for img in images or []:
        thumb = img.copy()
        thumb.thumbnail((max_image_side, max_image_side))
        parts.append(image_part(thumb))
    parts.append({"type": "text", "text": instruction})
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": parts}]


def parse_verdict(text: str | None, dimensions: list[str]) -> JudgeVerdict:
    """Scores from the judge's reply; the first JSON object holding every dimension wins."""
    if not text:
        return JudgeVerdict(None, "judge_empty_reply", detail=repr(text))
    candidates = [text.strip()] + _JSON_OBJECT.findall(text)
    for candidate in candidates:
        try:
            obj = json.loads(candidate)
        except ValueError:
            continue
        if not isinstance(obj, dict) or not all(d in obj for d in dimensions):
            continue
        scores = {}
        for d in dimensions:
            value = obj[d]
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 5:
                return JudgeVerdict(None, f"judge_out_of_range_{d}", detail=text[:200])
            scores[d] = rubric_to_unit(float(value))
        rationale = obj.get("rationale")
        return JudgeVerdict(scores, None, rationale if isinstance(rationale, str) else None)
    return JudgeVerdict(None, "judge_unparseable", detail=text[:200])


class JudgeScorer:
    """Batches samples through a chat client and returns one ``JudgeVerdict`` per sample."""

    def __init__(self, client: Any, dimensions: list[str], batch_size: int = 64, max_image_side: int = 512):
        self.client = client
        self.dimensions = list(dimensions)
        self.batch_size = batch_size
        self.max_image_side = max_image_side

    def score(self, rows: list[dict], images: list[list]) -> list[JudgeVerdict]:
        """``images[i]`` are the decoded PIL images of ``rows[i]``."""
        verdicts: list[JudgeVerdict] = []
        for start in range(0, len(rows), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(rows)))
            requests = [build_judge_request(rows[i], self.dimensions, images[i], self.max_image_side) for i in chunk]
            for result in self.client.complete(requests):
                if result.error is not None:
                    verdicts.append(JudgeVerdict(None, "judge_error", detail=result.error))
                else:
                    verdicts.append(parse_verdict(result.text, self.dimensions))
        return verdicts
