"""Prompts: MedEvalKit's instruction sentences, so scores are comparable with published tables.

Each benchmark item carries a ``prompt_type``; the template appends the matching instruction sentence (English or
Chinese, direct or reasoning) exactly as MedEvalKit words it (see ``shared/DESIGN.md`` section 2):

=================  =============================================================================================
prompt type        instruction (direct)
=================  =============================================================================================
multiple_choice    Answer with the option's letter from the given choices directly.
judgement          Please output 'yes' or 'no'(no extra output).
close_ended        Answer the question using a single word or phrase.
open_ended         Please answer the question concisely.
dataset            none: the item's own user turn is used as written (the demo data's training format)
=================  =============================================================================================

With ``reasoning=True`` each instruction asks for the final answer inside ``\\boxed{}``. The layout around the options
(blank lines, "Options: " with its trailing space, MMMU's "(A) text" lines) also follows MedEvalKit, because whitespace
changes tokenisation and therefore scores. :func:`template_identity` returns the record stored in ``results.json``.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from .answers import option_letters

if TYPE_CHECKING:
    from .items import EvalItem

__all__ = [
    "DATASET_REASONING_SUFFIX", "INSTRUCTIONS", "OPTION_FORMATS", "PROMPT_TYPES", "TEMPLATE_NAME", "build_prompt",
    "template_identity",
]

TEMPLATE_NAME = "medevalkit"
# Bumped whenever a sentence or layout below changes, so two result files with equal identity used equal prompts.
TEMPLATE_VERSION = 1

PROMPT_TYPES = ("multiple_choice", "judgement", "close_ended", "open_ended", "dataset")

# (lang, prompt type) -> (direct instruction, reasoning instruction)
INSTRUCTIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("en", "multiple_choice"): (
        "Answer with the option's letter from the given choices directly.",
        'Answer with the option\'s letter from the given choices and put the letter in one "\\boxed{}".',
    ),
    ("en", "judgement"): (
        "Please output 'yes' or 'no'(no extra output).",
        'Please output "yes" or "no" and put the answer in one "\\boxed{}".',
    ),
    ("en", "close_ended"): (
        "Answer the question using a single word or phrase.",
        'Answer the question using a single word or phrase and put the answer in one "\\boxed{}".',
    ),
    ("en", "open_ended"): (
        "Please answer the question concisely.",
        'Please answer the question concisely and put the answer in one "\\boxed{}".',
    ),
    ("zh", "multiple_choice"): (
        "请直接使用给定选项中的选项字母来回答该问题。",
        '请直接使用给定选项中的选项字母来回答该问题,并将答案包裹在"\\boxed{}"里',
    ),
    ("zh", "judgement"): ("请输出'是'或'否'(不要有任何其它输出)。", "请输出'是'或'否'，并将答案放在一个'\\boxed{}'中。"),
    ("zh", "close_ended"): ("请用一个单词或者短语回答该问题。", "请用一个单词或者短语回答该问题，并将答案放在一个'\\boxed{}'中。"),
    ("zh", "open_ended"): ("请简要回答该问题。", "请简要回答该问题，并将答案放在一个'\\boxed{}'中。"),
}

# Appended to a dataset's own prompt (prompt type "dataset") in reasoning mode; MedEvalKit has no such prompt type.
DATASET_REASONING_SUFFIX = '\nPut the final answer in one "\\boxed{}".'

# How an option line is written: "A. text" (OmniMedVQA, MedXpertQA, text benchmarks), "(A) text" (MMMU), or the
# source's own strings untouched ("raw", PMC-VQA whose CSV cells already read "A:text").
OPTION_FORMATS = {"dot": "{letter}. {text}", "paren": "({letter}) {text}", "raw": "{raw}"}


def _instruction(lang: str, prompt_type: str, reasoning: bool) -> str:
    key = (lang if (lang, prompt_type) in INSTRUCTIONS else "en", prompt_type)
    if key not in INSTRUCTIONS:
        raise ValueError(f"No instruction for prompt type {prompt_type!r}; expected one of {PROMPT_TYPES}.")
    return INSTRUCTIONS[key][1 if reasoning else 0]


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
    instruction = _instruction(item.lang, item.prompt_type, reasoning)
    if item.prompt_type != "multiple_choice":
        return f"{question}\n{instruction}"
    lines = _option_lines(item)
    if item.option_format == "paren":
        # MMMU's own template: question, blank line, "(A) ..." lines each ending in a newline, blank line, then the
        # template's 8-space indentation before the instruction.
        options = "".join(f"{line}\n" for line in lines)
        return f"\n{question}\n\n{options}\n\n        {instruction}"
    header = ("问题： ", "选项： ") if item.lang == "zh" else ("Question: ", "Options: ")
    return f"\n{header[0]}{question}\n{header[1]}\n" + "\n".join(lines) + f"\n{instruction}"


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
