"""Verifiable rewards for GRPO: plain functions ``(completions, **kwargs) -> list[float | None]``.

TRL's `GRPOTrainer` calls every reward function with the generated ``completions`` plus every dataset column as a
keyword list (one entry per completion), so on the demo schema the accuracy reward reads ``answer``, ``kind`` and
``options`` directly. Answers are extracted and scored by `infimed.core.answers`, the module the evaluation harness
uses, so a completion the reward calls correct is one the benchmark scores as correct.

    from infimed.training.rewards import build_reward_funcs
    reward_funcs = build_reward_funcs(["format", "accuracy"])   # pass to InfiMedGRPOTrainer(reward_funcs=...)

A reward of ``None`` means "not applicable" (e.g. accuracy on a free-text caption): TRL turns it into NaN and leaves
it out of the weighted sum, so such samples are scored by the other rewards only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from infimed.core.answers import ANSWER_FORMAT_INSTRUCTION, follows_answer_format, score_answer
from infimed.core.tasks import SCORED_KINDS, QuestionKind

__all__ = [
    "REWARD_FUNCS",
    "accuracy_reward",
    "add_format_instruction",
    "build_reward_funcs",
    "completion_text",
    "format_reward",
    "length_penalty",
]

def completion_text(completion: Any) -> str:
    """The text of one completion, conversational (``[{"role": "assistant", "content": ...}]``) or plain.

    >>> completion_text([{"role": "assistant", "content": "<answer>yes</answer>"}])
    '<answer>yes</answer>'
    >>> completion_text("plain text")
    'plain text'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        parts = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, dict) else message
            if isinstance(content, list):  # content blocks: keep the text ones
                content = "".join(block.get("text", "") for block in content if isinstance(block, dict))
            parts.append(content or "")
        return "".join(parts)
    raise TypeError(
        f"A completion must be a string or a list of chat messages, got {type(completion).__name__}: {completion!r:.80}"
    )


def format_reward(completions: Sequence[Any], **kwargs) -> list[float]:
    r"""1.0 when the completion is exactly ``<think>...</think><answer>...</answer>`` (whitespace around allowed), the
    layout `infimed.core.answers.ANSWER_FORMAT_INSTRUCTION` asks for.

    The answer block must be non-empty; the think block may be empty. Text before or after the blocks, a missing
    or doubled tag, or tags in the wrong order give 0.0.

    >>> format_reward([
    ...     "<think>The lesion is bright.</think>\n<answer>yes</answer>",
    ...     [{"role": "assistant", "content": "<think></think><answer>B</answer>"}],
    ...     "<think>x</think><answer>yes</answer> I hope this helps.",
    ...     "<think>x<answer>yes</answer>",
    ...     "<answer>yes</answer><think>x</think>",
    ...     "<think>x</think><answer> </answer>",
    ... ])
    [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """
    return [1.0 if follows_answer_format(completion_text(c)) else 0.0 for c in completions]


def add_format_instruction(user_message: dict, instruction: str = ANSWER_FORMAT_INSTRUCTION) -> dict:
    """A copy of a TRL-style user turn with ``instruction`` appended as a last text block (no-op if empty).

    >>> user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}
    >>> add_format_instruction(user, "F.")["content"]
    [{'type': 'image'}, {'type': 'text', 'text': 'Q?'}, {'type': 'text', 'text': '\\nF.'}]
    """
    content = user_message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    content = [dict(block) for block in (content or [])]
    if instruction:
        content.append({"type": "text", "text": "\n" + instruction})
    return {**user_message, "content": content}


def _column(kwargs: dict, name: str, n: int, default: Any = None) -> list:
    values = kwargs.get(name)
    if values is None:
        return [default] * n
    if len(values) != n:
        raise ValueError(
            f"Reward column `{name}` has {len(values)} values for {n} completions; pass one per completion."
        )
    return list(values)


def accuracy_reward(
    completions: Sequence[Any],
    answer: Sequence[str] | None = None,
    kind: Sequence[str] | None = None,
    options: Sequence[Sequence[str]] | None = None,
    **kwargs,
) -> list[float | None]:
    """1.0 when the extracted final answer matches the gold ``answer`` (scored as the evaluation harness does).

    Reads the demo-schema columns ``answer`` (gold), ``kind`` (``yes_no`` / ``multiple_choice`` / ``open`` /
    ``caption``) and ``options`` (option texts, letters A, B, ... implied). Kinds without a string-matchable answer
    (``caption``) and samples with an empty gold answer give ``None``, which TRL leaves out of the reward sum.

    >>> accuracy_reward(
    ...     ["<think>bright</think><answer>Yes</answer>", "<answer>(b)</answer>", "<answer>no</answer>"],
    ...     answer=["yes", "B", "yes"],
    ...     kind=["yes_no", "multiple_choice", "yes_no"],
    ...     options=[[], ["CT", "MRI", "X-ray"], []],
    ... )
    [1.0, 1.0, 0.0]
    >>> accuracy_reward(["<answer>a long report</answer>"], answer=["report"], kind=["caption"], options=[[]])
    [None]
    """
    n = len(completions)
    if answer is None:
        raise ValueError(
            "`accuracy_reward` needs the gold answers: the training dataset must have an `answer` column "
            "(and `kind`, `options` for multiple choice), as in `infimed demo-data`."
        )
    golds = _column({"answer": answer}, "answer", n)
    kinds = _column({"kind": kind}, "kind", n, default=QuestionKind.OPEN)
    all_options = _column({"options": options}, "options", n, default=None)
    rewards: list[float | None] = []
    for completion, gold, sample_kind, sample_options in zip(completions, golds, kinds, all_options, strict=True):
        if sample_kind not in SCORED_KINDS or gold is None or not str(gold).strip():
            rewards.append(None)
            continue
        match = score_answer(completion_text(completion), str(gold), sample_kind, list(sample_options or []) or None)
        rewards.append(1.0 if match.correct else 0.0)
    return rewards


def length_penalty(
    completions: Sequence[Any],
    completion_ids: Sequence[Sequence[int]] | None = None,
    target_length: int = 256,
    max_length: int = 512,
    **kwargs,
) -> list[float]:
    """0.0 up to ``target_length``, then linearly down to -1.0 at ``max_length`` (and below -1.0 never).

    Lengths are in tokens when TRL passes ``completion_ids``, else in characters. Configure it with
    `functools.partial` (`build_reward_funcs` does this from the GRPO config).

    >>> length_penalty(["a" * 10, "a" * 20, "a" * 30, "a" * 99], target_length=10, max_length=30)
    [0.0, -0.5, -1.0, -1.0]
    >>> length_penalty(["ignored"], completion_ids=[[1, 2, 3]], target_length=2, max_length=4)
    [-0.5]
    """
    if not 0 <= target_length < max_length:
        raise ValueError(
            f"`length_penalty` needs 0 <= target_length < max_length, got target_length={target_length}, "
            f"max_length={max_length}."
        )
    if completion_ids is not None:
        lengths = [len(ids) for ids in completion_ids]
    else:
        lengths = [len(completion_text(c)) for c in completions]
    span = max_length - target_length
    return [0.0 - min(1.0, max(0, length - target_length) / span) for length in lengths]


# name -> reward function; the names are what `InfiMedGRPOConfig.reward_funcs` and recipes use.
REWARD_FUNCS: dict[str, Callable[..., list[float | None]]] = {
    "format": format_reward,
    "accuracy": accuracy_reward,
    "length": length_penalty,
}


def build_reward_funcs(
    names: Sequence[str], length_target: int = 256, length_max: int | None = None
) -> list[Callable[..., list[float | None]]]:
    """Reward callables for ``names`` (keys of `REWARD_FUNCS`), the length penalty bound to its lengths.

    >>> [getattr(f, "__name__", None) or f.func.__name__ for f in build_reward_funcs(["format", "length"], 8, 16)]
    ['format_reward', 'length_penalty']
    """
    funcs = []
    for name in names:
        if name not in REWARD_FUNCS:
            raise ValueError(f"Unknown reward {name!r}; choose from {sorted(REWARD_FUNCS)}.")
        func = REWARD_FUNCS[name]
        if func is length_penalty:
            func = functools.partial(
                length_penalty, target_length=length_target, max_length=length_max or 2 * max(length_target, 1)
            )
        funcs.append(func)
    return funcs
