"""Teacher instructions for chain-of-thought synthesis, one per trace style.

InfiMed (arXiv 2505.23867) enriches information-sparse SFT samples with two kinds of traces written by a stronger
model: a plain step-by-step chain of thought, and a "reflective" one that checks and revises its own reasoning
before answering. The wording below is ours; both ask for the `<think>...</think><answer>...</answer>` layout the GRPO
format reward checks, so synthesized traces teach the same format the RL stage rewards.
"""

from __future__ import annotations

import re

__all__ = ["COT_STYLES", "REFLECTION_STEPS", "build_teacher_text", "reflection_step"]

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


# What the reflection check accepts as a re-examination step, by kind (case-insensitive, inside <think>). Each pattern
# names an act of re-checking, not a word plain reasoning also uses: "consistent with" or "therefore" do not count.
REFLECTION_STEPS: dict[str, re.Pattern] = {
    # going back to a finding: "Wait, let me check", "let me re-examine the left lung", "looking again at ..."
    "revisited_finding": re.compile(
        r"\b(wait|let me (re-?check|check (again|that|this)|double[- ]check|re-?examine|look again|reconsider)"
        r"|re-?examin(e|ing) (the|this|that|my)|looking (again|back)|on (a )?second look|revisit(ing)? (the|my))\b",
        re.IGNORECASE),
    # weighing another reading: "alternatively", "could this instead be", "rule out", "another possibility"
    "considered_alternative": re.compile(
        r"\b(alternatively|another (possibility|explanation|option)|could (it|this|that) (instead |also )?be"
        r"|rul(e|ed|ing) out|differential)\b", re.IGNORECASE),
    # the outcome of a re-check: "this confirms", "I was wrong", "correction:", "on second thought"
    "confirmation_or_correction": re.compile(
        r"\b((this|which|that|it) confirms|confirm(s|ed|ing)? (that|my|the first)|i was wrong|i made a mistake"
        r"|correction:|correcting (my|the)|on second thought|on reflection)\b", re.IGNORECASE),
}
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)


def reflection_step(trace: str) -> str | None:
    """The first kind of re-examination step (`REFLECTION_STEPS`) found in the trace's `<think>` part, or None.

    >>> reflection_step("<think>A nodule in the left lung. Wait, let me check the right lung: clear.</think>"
    ...                 "<answer>left</answer>")
    'revisited_finding'
    >>> reflection_step("<think>Could this instead be an artefact? No: it has mass.</think><answer>yes</answer>")
    'considered_alternative'
    >>> reflection_step("<think>The lesion is consistent with a nodule, so yes.</think><answer>yes</answer>") is None
    True
    >>> reflection_step("Wait, let me check. <answer>yes</answer>") is None  # only the reasoning part counts
    True
    """
    think = " ".join(_THINK.findall(trace or ""))
    for kind, pattern in REFLECTION_STEPS.items():
        if pattern.search(think):
            return kind
    return None
