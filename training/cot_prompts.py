"""Teacher instructions for chain-of-thought synthesis, one per trace style.

InfiMed (arXiv 2505.23867) enriches information-sparse SFT samples with two kinds of traces written by a stronger
model: a plain step-by-step chain of thought, and a "reflective" one that checks and revises its own reasoning
before answering. The wording below is ours; both ask for the `<think>...</think><answer>...</answer>` layout the GRPO
format reward checks, so synthesized traces teach the same format the RL stage rewards.
"""

from __future__ import annotations

__all__ = ["COT_STYLES", "build_teacher_text"]

_FORMAT = (
    "Write your reasoning inside <think> </think> tags and then only the final answer inside <answer> </answer> tags, "
    "for example: <think>...</think><answer>...</answer>. Write nothing outside the tags."
)

_ANSWER_SHAPE = {
    "yes_no": "The final answer must be exactly 'yes' or 'no'.",
    "multiple_choice": "The final answer must be the letter of one option.",
    "open": "The final answer must be a short word or phrase.",
    "closed": "The final answer must be a short word or phrase.",
}

# style name -> instruction placed before the question
COT_STYLES: dict[str, str] = {
    "general": (
        "You are a medical imaging expert. Answer the question about the image(s) by reasoning step by step: "
        "describe the relevant findings, relate them to the question, and conclude."
    ),
    "reflective": (
        "You are a medical imaging expert. Answer the question about the image(s) by reasoning step by step, then "
        "reflect: re-examine each finding you relied on, look for evidence against your first conclusion (write "
        "'Wait, let me check' before re-checking), correct any mistake, and only then conclude."
    ),
}


def build_teacher_text(style: str, question: str, kind: str, options: list[str] | None) -> str:
    """The text of the teacher request for one sample (the images are sent alongside as separate parts).

    >>> text = build_teacher_text("general", "Is there a lesion?", "multiple_choice", ["CT", "MRI"])
    >>> print(text.splitlines()[2:6])
    ['Question: Is there a lesion?', 'Options:', 'A. CT', 'B. MRI']
    >>> text.splitlines()[-1].startswith("The final answer must be the letter of one option. Write your reasoning")
    True
    """
    if style not in COT_STYLES:
        raise ValueError(f"Unknown chain-of-thought style {style!r}; choose from {sorted(COT_STYLES)}.")
    lines = [COT_STYLES[style], "", f"Question: {question.strip()}"]
    if options:
        lines.append("Options:")
        lines.extend(f"{chr(ord('A') + i)}. {text}" for i, text in enumerate(options))
    lines.append("")
    lines.append(f"{_ANSWER_SHAPE.get(kind, '')} {_FORMAT}".strip())
    return "\n".join(lines)
