"""Evaluation prompts, in two named sets; ``results.json`` records which one a run used (:func:`template_identity`).

- ``"infimed"`` (the default): MedEvalKit's instruction sentences (:mod:`infimed.core.prompts`, the ones the training
  data appends) in a cleaned layout: option texts without their source prefixes, MedXpertQA's question without its
  duplicated "Answer Choices" tail, PubMedQA's context inside the question.
- ``"medevalkit"`` (``--medevalkit-compat``): MedEvalKit's prompts word for word, per benchmark, from the source's own
  strings (``EvalItem.source``), and the images it sends (:func:`prompt_images`: MMMU sends only ``image_1``). The
  layouts, read from MedEvalKit's source:

  ============================  =====================================================================================
  benchmark                     user text
  ============================  =====================================================================================
  VQA-RAD                       question, newline, yes/no sentence if the lowercased gold is yes/no, else open
  PathVQA                       the same, with the gold compared as is ("Yes" takes the open sentence)
  SLAKE                         question, newline, close-ended or open-ended sentence by ``answer_type``, in its
                                language
  PMC-VQA, OmniMedVQA,          newline, ``Question: <q>``, ``Options: `` (trailing space), one choice per line,
  MedXpertQA-MM, MedQA,         the sentence. Choices: PMC-VQA's raw cells ``A:MRI ``, else ``A. text``; MedXpertQA's
  MedMCQA                       question keeps its "Answer Choices: ..." tail
  PubMedQA                      ``Context: <paragraphs joined by newlines>``, newline, the multiple-choice layout with
                                choices ``A.yes`` (no space)
  MMMU (multiple choice)        newline, question, newline, ``(A) text`` lines each ending in a newline, a newline and
                                8 spaces, the sentence
  MMMU (open)                   newline, question, newline and 8 spaces, the short-answer sentence
  ============================  =====================================================================================
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from infimed.core.prompts import DATASET_REASONING_SUFFIX, INSTRUCTIONS, OPTION_FORMATS, instruction
from infimed.core.tasks import option_letters

from .compat import compat_choices, compat_gold

if TYPE_CHECKING:
    from .items import EvalItem

__all__ = ["PROMPT_SETS", "TEMPLATE_VERSION", "build_prompt", "prompt_images", "template_identity"]

PROMPT_SETS = ("infimed", "medevalkit")
# Bumped whenever a sentence (`infimed.core.prompts`) or a layout below changes, so two result files with equal
# identity used equal prompts.
TEMPLATE_VERSION = 2
_MMMU_INDENT = " " * 8  # the indentation of MedEvalKit's MMMU template string, which ends up in the prompt


def _check_set(prompt_set: str) -> None:
    if prompt_set not in PROMPT_SETS:
        raise ValueError(f"Unknown prompt set {prompt_set!r}; choose one of {PROMPT_SETS}.")


def _option_lines(item: EvalItem) -> list[str]:
    fmt = OPTION_FORMATS[item.option_format]
    raws = item.raw_options or item.options
    letters = option_letters(len(item.options))
    return [fmt.format(letter=l, text=t, raw=r) for l, t, r in zip(letters, item.options, raws)]


def _multiple_choice(question: str, lines: list[str], lang: str, reasoning: bool) -> str:
    header = ("问题： ", "选项： ") if lang == "zh" else ("Question: ", "Options: ")
    sentence = instruction("multiple_choice", lang, reasoning)
    return f"\n{header[0]}{question}\n{header[1]}\n" + "\n".join(lines) + f"\n{sentence}"


def _infimed_prompt(item: EvalItem, reasoning: bool) -> str:
    question = item.question if not item.context else f"{item.context}\n{item.question}"
    if item.prompt_type == "dataset":
        return question + DATASET_REASONING_SUFFIX if reasoning else question
    sentence = instruction(item.prompt_type, item.lang, reasoning)
    if item.prompt_type != "multiple_choice":
        return f"{question}\n{sentence}"
    lines = _option_lines(item)
    if item.option_format == "paren":
        options = "".join(f"{line}\n" for line in lines)
        return f"\n{question}\n\n{options}\n\n{_MMMU_INDENT}{sentence}"
    return _multiple_choice(question, lines, item.lang, reasoning)


def _medevalkit_prompt(item: EvalItem, reasoning: bool) -> str:
    question = str(item.source.get("question", item.question))
    benchmark = item.benchmark
    if benchmark.startswith("mmmu"):
        if item.options and item.kind == "multiple_choice":
            options = item.source.get("options") or item.options
            lines = "".join(f"({l}) {o}\n" for l, o in zip(option_letters(len(options)), options))
            return f"\n{question}\n{lines}\n{_MMMU_INDENT}" + instruction("multiple_choice", "en", reasoning)
        return f"\n{question}\n{_MMMU_INDENT}" + instruction("close_ended", "en", reasoning)
    if item.prompt_type == "dataset":
        return _infimed_prompt(item, reasoning)
    if item.kind == "multiple_choice":
        body = _multiple_choice(question, compat_choices(item), "en", reasoning)
        if benchmark == "pubmedqa":
            return f"Context: {item.source.get('context', '')}\n{body}"
        return body
    gold = compat_gold(item)
    if benchmark.startswith("vqa_rad") or benchmark.startswith("path_vqa"):
        # VQA-RAD lowercases the gold before the test, PathVQA does not.
        yes_no = (gold.lower() if benchmark.startswith("vqa_rad") else gold) in ("yes", "no")
        return f"{question}\n" + instruction("judgement" if yes_no else "open_ended", "en", reasoning)
    if benchmark.startswith("slake"):
        kind = "open_ended" if item.category.get("answer_type") == "open" else "close_ended"
        return f"{question}\n" + instruction(kind, item.lang, reasoning)
    return f"{question}\n" + instruction(item.prompt_type, item.lang, reasoning)


def build_prompt(item: EvalItem, reasoning: bool = False, prompt_set: str = "infimed") -> str:
    """The user text for ``item`` in ``prompt_set`` (without image placeholders: images are separate message parts,
    see :func:`prompt_images`)."""
    _check_set(prompt_set)
    return _medevalkit_prompt(item, reasoning) if prompt_set == "medevalkit" else _infimed_prompt(item, reasoning)


def prompt_images(item: EvalItem, prompt_set: str = "infimed") -> list[Any]:
    """The images sent with ``item``: all of them, except MedEvalKit's MMMU, which sends only the first (and none when
    the options themselves hold more than one ``<img='...'>`` reference)."""
    _check_set(prompt_set)
    if prompt_set == "medevalkit" and item.benchmark.startswith("mmmu"):
        option_images = [m for o in item.source.get("options") or item.options for m in re.findall(r"<img='(.*?)'>", o)]
        return [] if len(option_images) > 1 else list(item.images[:1])
    return list(item.images)


def template_identity(reasoning: bool, system_prompt: str | None, prompt_set: str = "infimed") -> dict:
    """What ``results.json`` records about the prompt: set name, version, mode, system prompt and a content hash."""
    _check_set(prompt_set)
    payload = json.dumps(
        {"instructions": {f"{k[0]}/{k[1]}": v for k, v in INSTRUCTIONS.items()}, "options": OPTION_FORMATS,
         "dataset_reasoning": DATASET_REASONING_SUFFIX, "set": prompt_set},
        sort_keys=True,
        ensure_ascii=False,
    )
    return {
        "name": prompt_set,
        "version": TEMPLATE_VERSION,
        "reasoning": reasoning,
        "system_prompt": system_prompt,
        "sha256": hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16],
    }
