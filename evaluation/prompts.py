"""The evaluation prompt template: MedEvalKit's layout around the question, so scores are comparable with
published tables.

The instruction sentences themselves live in :mod:`infimed.core.prompts` (the training data appends the same ones).
The layout around the options (blank lines, "Options: " with its trailing space, MMMU's "(A) text" lines) also follows
MedEvalKit, because whitespace changes tokenisation and therefore scores. :func:`template_identity` returns the record
stored in ``results.json``.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from infimed.core.prompts import DATASET_REASONING_SUFFIX, INSTRUCTIONS, OPTION_FORMATS, instruction
from infimed.core.tasks import option_letters

if TYPE_CHECKING:
    from .items import EvalItem

__all__ = ["TEMPLATE_NAME", "TEMPLATE_VERSION", "build_prompt", "template_identity"]

TEMPLATE_NAME = "medevalkit"
# Bumped whenever a sentence (`infimed.core.prompts`) or the layout below changes, so two result files with equal
# identity used equal prompts.
TEMPLATE_VERSION = 1


def _option_lines(item: EvalItem) -> list[str]:
    fmt = OPTION_FORMATS[item.option_format]
    raws = item.raw_options or item.options
    letters = option_letters(len(item.options))
    return [fmt.format(letter=l, text=t, raw=r) for l, t, r in zip(letters, item.options, raws)]


def build_prompt(item: EvalItem, reasoning: bool = False) -> str:
    """The user text for ``item`` (without image placeholders: images are separate message parts)."""
    question = item.question if not item.context else f"{item.context}\n{item.question}"
    if item.prompt_type == "dataset":
        return question + DATASET_REASONING_SUFFIX if reasoning else question
    sentence = instruction(item.prompt_type, item.lang, reasoning)
    if item.prompt_type != "multiple_choice":
        return f"{question}\n{sentence}"
    lines = _option_lines(item)
    if item.option_format == "paren":
        # MMMU's own template: question, blank line, "(A) ..." lines each ending in a newline, blank line, then the
        # template's 8-space indentation before the instruction.
        options = "".join(f"{line}\n" for line in lines)
        return f"\n{question}\n\n{options}\n\n        {sentence}"
    header = ("问题： ", "选项： ") if item.lang == "zh" else ("Question: ", "Options: ")
    return f"\n{header[0]}{question}\n{header[1]}\n" + "\n".join(lines) + f"\n{sentence}"


def template_identity(reasoning: bool, system_prompt: str | None) -> dict:
    """What ``results.json`` records about the prompt: name, version, mode, system prompt and a content hash."""
    payload = json.dumps(
        {"instructions": {f"{k[0]}/{k[1]}": v for k, v in INSTRUCTIONS.items()}, "options": OPTION_FORMATS,
         "dataset_reasoning": DATASET_REASONING_SUFFIX},
        sort_keys=True,
        ensure_ascii=False,
    )
    return {
        "name": TEMPLATE_NAME,
        "version": TEMPLATE_VERSION,
        "reasoning": reasoning,
        "system_prompt": system_prompt,
        "sha256": hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16],
    }
