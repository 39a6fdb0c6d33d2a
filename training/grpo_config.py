"""`InfiMedGRPOConfig`: TRL's `GRPOConfig` plus InfiMed's rewards, prompt format and visual-token count."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from infimed.core.answers import ANSWER_FORMAT_INSTRUCTION
from infimed.training.rewards import REWARD_FUNCS

__all__ = ["InfiMedGRPOConfig"]


@dataclass
class InfiMedGRPOConfig(GRPOConfig):
    r"""
    Configuration for [`InfiMedGRPOTrainer`]: every [`~trl.GRPOConfig`] field, plus:

    Parameters:
        > Rewards (InfiMed-RL: a format reward and a string-match accuracy reward)

        reward_funcs (`list[str]`, *optional*, defaults to `["format", "accuracy"]`):
            Names of the rewards in `infimed.training.rewards.REWARD_FUNCS` (`format`, `accuracy`, `length`), used
            when the trainer is given no `reward_funcs`. Weigh them with `reward_weights` (same order).
        length_penalty_target (`int`, *optional*, defaults to `256`):
            Completion length (tokens) up to which the `length` reward is 0.
        length_penalty_max (`int` or `None`, *optional*, defaults to `None`):
            Length at which the `length` reward reaches -1; `None` uses `max_completion_length`.

        > Prompts and images

        format_instruction (`str`, *optional*):
            Appended to the last user turn when prompts are built from a `messages` column, asking for the
            `<think>...</think><answer>...</answer>` layout the format reward checks. Empty string: append nothing.
        num_image_tokens (`int` or `None`, *optional*, defaults to `None`):
            Visual tokens per image for InfiMed models, set once on the model config (which every policy and
            reference call falls back to) and on the processor; `None` keeps the model's value. Ignored, with a
            warning, for models without it (e.g. Qwen2.5-VL, whose token count follows the image resolution).
    """

    reward_funcs: list[str] = field(
        default_factory=lambda: ["format", "accuracy"],
        metadata={"help": f"Reward names used when the trainer gets none; choose from {sorted(REWARD_FUNCS)}."},
    )
    length_penalty_target: int = field(
        default=256, metadata={"help": "Completion tokens up to which the `length` reward is 0."}
    )
    length_penalty_max: int | None = field(
        default=None, metadata={"help": "Tokens at which the `length` reward reaches -1; None: max_completion_length."}
    )
    format_instruction: str = field(
        default=ANSWER_FORMAT_INSTRUCTION,
        metadata={"help": "Appended to the last user turn of `messages` prompts; '' appends nothing."},
    )
    num_image_tokens: int | None = field(
        default=None, metadata={"help": "Visual tokens per image (InfiMed models); None keeps the model's."}
    )
    strict_data: bool = field(
        default=False,
        metadata={"help": "Raise on the first unusable sample (recipe stages) instead of skipping and counting it."},
    )
    # 0.04: the KL coefficient of the GRPO paper (DeepSeekMath) and of TRL before it turned the reference off by
    # default; InfiMed-RL keeps a KL term to the frozen reference, so it is on here.
    beta: float = field(
        default=0.04, metadata={"help": "KL coefficient to the frozen reference model; 0.0 drops the reference."}
    )

    def __post_init__(self):
        super().__post_init__()
        unknown = [name for name in self.reward_funcs if name not in REWARD_FUNCS]
        if unknown or not self.reward_funcs:
            raise ValueError(
                f"`reward_funcs` must be a non-empty list of {sorted(REWARD_FUNCS)}, got {self.reward_funcs}."
            )
        if self.num_image_tokens is not None and self.num_image_tokens < 1:
            raise ValueError(f"`num_image_tokens` must be a positive integer or None, got {self.num_image_tokens}.")
        if self.beta < 0:
            raise ValueError(f"`beta` (KL coefficient) must be >= 0, got {self.beta}.")
