"""MedEvalKit's instruction sentences, and the prompt layout of InfiMed's training rows.

Each benchmark item carries a ``prompt_type``; the evaluation template (:mod:`infimed.evaluation.prompts`) appends the
matching instruction sentence (English or Chinese, direct or reasoning) exactly as MedEvalKit words it, so scores are
comparable with published tables. The training converters and the demo data append the same direct sentences, so a
model is trained with the wording it is evaluated with:

=================  =============================================================================================
prompt type        instruction (direct)
=================  =============================================================================================
multiple_choice    Answer with the option's letter from the given choices directly.
judgement          Please output 'yes' or 'no'(no extra output).
close_ended        Answer the question using a single word or phrase.
open_ended         Please answer the question concisely.
dataset            none: the item's own user turn is used as written (the demo data's training format)
=================  =============================================================================================

With ``reasoning=True`` each instruction asks for the final answer inside ``\\boxed{}``. The ``<think>``/``<answer>``
layout GRPO asks for is :data:`infimed.core.answers.ANSWER_FORMAT_INSTRUCTION`, next to the check that reads it.

    >>> print(training_prompt("What organ is shown?", "multiple_choice", ["liver", "lung"]))
    What organ is shown?
    Options:
    A. liver
    B. lung
    Answer with the option's letter from the given choices directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from .tasks import QuestionKind, option_letter

__all__ = [
    "DATASET_REASONING_SUFFIX",
    "INSTRUCTIONS",
    "OPTION_FORMATS",
    "PROMPT_TYPES",
    "PROMPT_TYPE_BY_KIND",
    "instruction",
    "training_prompt",
]

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

# How an option line is written: "A. text" (OmniMedVQA, MedXpertQA, text benchmarks, every training row), "(A) text"
# (MMMU), or the source's own strings untouched ("raw", PMC-VQA whose CSV cells already read "A:text").
OPTION_FORMATS = {"dot": "{letter}. {text}", "paren": "({letter}) {text}", "raw": "{raw}"}

# Question kind of a training row (``closed``: an open row whose source says CLOSED) -> the prompt type MedEvalKit
# uses for such questions. Captions have none: their question is the whole prompt.
PROMPT_TYPE_BY_KIND: dict[str, str] = {
    QuestionKind.MULTIPLE_CHOICE: "multiple_choice",
    QuestionKind.YES_NO: "judgement",
    QuestionKind.CLOSED: "close_ended",
    QuestionKind.OPEN: "open_ended",
}


def instruction(prompt_type: str, lang: str = "en", reasoning: bool = False) -> str:
    """MedEvalKit's sentence for ``prompt_type`` in ``lang`` (English when the language has none).

    >>> instruction("close_ended", "zh")
    '请用一个单词或者短语回答该问题。'
    """
    key = (lang if (lang, prompt_type) in INSTRUCTIONS else "en", prompt_type)
    if key not in INSTRUCTIONS:
        raise ValueError(f"No instruction for prompt type {prompt_type!r}; expected one of {PROMPT_TYPES}.")
    return INSTRUCTIONS[key][1 if reasoning else 0]


def training_prompt(
    question: str, prompt_type: str | None, options: Sequence[str] = (), lang: str = "en"
) -> str:
    """The user text of a training row (without image placeholders): the question, then for multiple choice an
    ``Options:`` line and one ``A. text`` line per option, then the direct instruction of ``prompt_type`` (none when
    ``prompt_type`` is None)."""
    lines = [question]
    if prompt_type == "multiple_choice":
        lines.append("Options:")
        lines.extend(OPTION_FORMATS["dot"].format(letter=option_letter(i), text=t) for i, t in enumerate(options))
    if prompt_type is not None:
        lines.append(instruction(prompt_type, lang))
    return "\n".join(lines)
