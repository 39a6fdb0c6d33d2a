"""`InfiMedGRPOTrainer`: TRL's `GRPOTrainer` for InfiMed and Qwen2.5-VL models on demo-schema medical VQA data.

What it adds to TRL, and nothing else:

- prompts from a ``messages`` column (user turn + gold assistant turn, the SFT/demo schema): the last user turn, with
  the `<think>/<answer>` instruction appended, becomes ``prompt``; ``answer``/``kind``/``options`` stay as reward
  columns and ``images`` as TRL's image column;
- the rewards named in the config (format + accuracy by default, `infimed.training.rewards`);
- one ``num_image_tokens`` for the processor and every policy/reference call of an InfiMed model: set once on the
  model config (which every call falls back to) and the processor, before TRL sees them;
- a reference model copied from the policy instance in memory (TRL reloads it from ``config._name_or_path``, which
  a model built from a config, or changed since loading, does not have).

    from infimed.training.grpo_trainer import InfiMedGRPOConfig, InfiMedGRPOTrainer
    args = InfiMedGRPOConfig(output_dir="runs/grpo", num_generations=4, max_completion_length=64)
    trainer = InfiMedGRPOTrainer(model, args=args, train_dataset=demo["train"], processing_class=processor)
    trainer.train()
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from accelerate.utils import is_peft_model
from transformers import PreTrainedModel
from trl import GRPOTrainer
from trl.models import prepare_deepspeed, prepare_fsdp
from trl.trainer.callbacks import SyncRefModelCallback
from trl.trainer.utils import add_fused_lm_head, disable_dropout_in_model

from infimed.training.grpo_config import InfiMedGRPOConfig
from infimed.training.image_tokens import set_num_image_tokens
from infimed.training.rewards import add_format_instruction, build_reward_funcs
from infimed.training.trl_compat import hidden_from_trl_init, with_empty_image_lists

__all__ = ["InfiMedGRPOConfig", "InfiMedGRPOTrainer", "prepare_grpo_dataset"]

logger = logging.getLogger(__name__)


def prepare_grpo_dataset(dataset, format_instruction: str = ""):
    """Give a ``messages`` dataset the ``prompt`` column GRPO generates from (other columns are kept).

    ``prompt`` holds every turn up to the last user turn (the gold assistant answer is dropped; the ``answer`` column
    carries it for the rewards), with ``format_instruction`` appended to that user turn. A dataset that already has
    ``prompt`` is returned unchanged.
    """
    if "prompt" in dataset.column_names:
        return dataset
    if "messages" not in dataset.column_names:
        raise ValueError(
            f"GRPO needs a `prompt` column or a `messages` column to build it from; the dataset has "
            f"{dataset.column_names}."
        )

    def to_prompt(messages):
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
        if last_user is None:
            raise ValueError(f"A sample's `messages` has no user turn: {messages!r:.200}")
        turns = [_clean_turn(m) for m in messages[:last_user]]
        return {"prompt": [*turns, add_format_instruction(_clean_turn(messages[last_user]), format_instruction)]}

    # `input_columns` keeps the image column out of the map: no decode/encode round trip of every image.
    return dataset.map(to_prompt, input_columns=["messages"], remove_columns=["messages"], desc="Building prompts")


def _clean_turn(message: dict) -> dict:
    """Arrow fills absent keys with None (`{"type": "image", "text": None}`); chat templates want them absent."""
    content = message["content"]
    if isinstance(content, list):
        content = [{k: v for k, v in block.items() if v is not None} for block in content]
    return {"role": message["role"], "content": content}


class InfiMedGRPOTrainer(GRPOTrainer):
    """[`~trl.GRPOTrainer`] with InfiMed's rewards, prompt building, `num_image_tokens` and an in-memory reference.

    Args:
        model: a model instance (InfiMed or any TRL-supported VLM / LM) or a path / Hub id.
        reward_funcs: reward callables or names; `None` builds `args.reward_funcs`.
        args: an [`InfiMedGRPOConfig`].
        train_dataset / eval_dataset: datasets with `prompt`, or `messages` (converted by `prepare_grpo_dataset`).
        ref_model: the frozen reference for the KL term; `None` copies the policy (when `args.beta > 0`).
        **kwargs: passed on to [`~trl.GRPOTrainer`] (`processing_class`, `peft_config`, `callbacks`, ...).
    """

    _tag_names = ["trl", "grpo", "infimed"]

    def __init__(
        self,
        model: str | PreTrainedModel,
        reward_funcs: Any = None,
        args: InfiMedGRPOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        ref_model: PreTrainedModel | None = None,
        **kwargs,
    ):
        if args is None:
            args = InfiMedGRPOConfig(output_dir="infimed-grpo")
        if not isinstance(args, InfiMedGRPOConfig):
            raise TypeError(
                f"`args` must be an InfiMedGRPOConfig (a trl.GRPOConfig plus InfiMed's fields), got "
                f"{type(args).__name__}; build it with `InfiMedGRPOConfig(**your_grpo_config.to_dict())`."
            )
        names_given = isinstance(reward_funcs, (list, tuple)) and reward_funcs and all(
            isinstance(f, str) for f in reward_funcs
        )
        if reward_funcs is None or names_given:
            length_max = args.length_penalty_max or args.max_completion_length
            reward_funcs = build_reward_funcs(reward_funcs or args.reward_funcs, args.length_penalty_target, length_max)
        instruction = args.format_instruction
        if train_dataset is not None:
            train_dataset = prepare_grpo_dataset(train_dataset, instruction)
        if eval_dataset is not None:
            if isinstance(eval_dataset, dict):
                eval_dataset = {k: prepare_grpo_dataset(v, instruction) for k, v in eval_dataset.items()}
            else:
                eval_dataset = prepare_grpo_dataset(eval_dataset, instruction)

        requested = args.num_image_tokens
        if (requested is not None and processing_class is not None
                and getattr(processing_class, "num_image_tokens", requested) != requested):
            processing_class = copy.deepcopy(processing_class)  # never change the caller's processor
        if not isinstance(model, str):
            # On the config, which every call falls back to, before the reference is copied from the model.
            set_num_image_tokens(model, processing_class, requested, "`InfiMedGRPOConfig`")

        # TRL builds the reference by reloading `model.config._name_or_path`. For a model instance we copy it instead
        # (same weights, nothing read from disk): the reference is then exactly the policy the run starts from.
        own_ref = (
            args.beta != 0.0
            and isinstance(model, PreTrainedModel)
            and not is_peft_model(model)
            and kwargs.get("peft_config") is None
        )
        if ref_model is not None and not own_ref:
            raise ValueError(
                "`ref_model` is only used with a model instance, `beta > 0` and no PEFT adapter (with PEFT the "
                "reference is the base model with the adapter disabled). Drop `ref_model` or change these settings."
            )
        if own_ref and args.cast_lm_head_to_fp32:
            raise ValueError(
                "`cast_lm_head_to_fp32=True` with a model instance is not supported by InfiMedGRPOTrainer's "
                "in-memory reference; pass the model as a path, or set `cast_lm_head_to_fp32=False`."
            )
        if own_ref:
            ref_model = ref_model if ref_model is not None else copy.deepcopy(model)
            ref_model.requires_grad_(False).eval()
        beta, sync_ref = args.beta, args.sync_ref_model
        # Hide the KL setting from TRL's constructor so it does not reload a reference from disk.
        hidden = {"beta": 0.0, "sync_ref_model": False} if own_ref else {}
        with hidden_from_trl_init(args, **hidden):
            super().__init__(
                model=model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                **kwargs,
            )
        self.beta = beta
        if own_ref:
            self.ref_model = self._prepare_reference(ref_model)
            if sync_ref:
                self.add_callback(SyncRefModelCallback(ref_model=self.ref_model, accelerator=self.accelerator))

        if isinstance(model, str) or processing_class is None:  # TRL loaded these itself: set them now, once
            applied = set_num_image_tokens(self.model, self.processing_class, requested, "`InfiMedGRPOConfig`")
            if isinstance(model, str) and applied is not None and self.ref_model is not None:
                self.ref_model.config.num_image_tokens = applied
        # The count every call uses (None: the model's count follows the image size, e.g. Qwen2.5-VL).
        self.num_image_tokens = getattr(self.model.config, "num_image_tokens", None)

    def _generate(self, prompts: list):
        return with_empty_image_lists(super()._generate(prompts))

    def _prepare_reference(self, ref_model: PreTrainedModel) -> torch.nn.Module:
        """The reference as TRL prepares its own: no dropout, fused log-prob head, placed/sharded like the policy."""
        if self.args.disable_dropout:
            disable_dropout_in_model(ref_model)
        add_fused_lm_head(ref_model, temperature=self.temperature, cast_lm_head_to_fp32=False)
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(ref_model, self.accelerator)
        if self.is_fsdp_enabled:
            return prepare_fsdp(ref_model, self.accelerator)
        return self.accelerator.prepare_model(ref_model, evaluation_mode=True)

