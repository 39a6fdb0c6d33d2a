"""`InfiMedGRPOTrainer`: TRL's `GRPOTrainer` for InfiMed and Qwen2.5-VL models on demo-schema medical VQA data.

What it adds to TRL, and nothing else:

- prompts from a ``messages`` column (user turn + gold assistant turn, the SFT/demo schema): the last user turn, with
  the `<think>/<answer>` instruction appended, becomes ``prompt``; ``answer``/``kind``/``options`` stay as reward
  columns and ``images`` as TRL's image column;
- the rewards named in the config (format + accuracy by default, `infimed.training.rewards`);
- one ``num_image_tokens`` for the processor and every policy/reference call of an InfiMed model (TRL's generation
  and log-prob code do not know this argument, so a forward pre-hook on the multimodal wrapper injects it);
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
from infimed.training.rewards import add_format_instruction, build_reward_funcs

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

        num_image_tokens = args.num_image_tokens
        if num_image_tokens is not None and processing_class is not None:
            processing_class = self._processor_with_image_tokens(processing_class, num_image_tokens)

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
        if own_ref:  # hide the KL setting from TRL's constructor so it does not reload a reference from disk
            args.beta, args.sync_ref_model = 0.0, False
        try:
            super().__init__(
                model=model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                **kwargs,
            )
        finally:
            args.beta, args.sync_ref_model = beta, sync_ref
        self.beta = beta
        if own_ref:
            self.ref_model = self._prepare_reference(ref_model)
            if sync_ref:
                self.add_callback(SyncRefModelCallback(ref_model=self.ref_model, accelerator=self.accelerator))

        if num_image_tokens is not None and hasattr(self.processing_class, "num_image_tokens"):
            # A processor TRL loaded itself (model given as a path) is ours to set; a caller's was copied above.
            self.processing_class.num_image_tokens = int(num_image_tokens)
        self.num_image_tokens = self._resolve_num_image_tokens(num_image_tokens)
        if self.num_image_tokens is not None:
            for target in (self.model, self.ref_model):
                if target is not None:
                    _inject_num_image_tokens(target, self.num_image_tokens)

    def _generate(self, prompts: list):
        # TRL marks a text-only prompt's images as None; a batch mixing text-only and image prompts then reaches the
        # processor as [None, [img], ...], which it cannot flatten. An empty list per text-only prompt is the form
        # processors accept (`num_images` counts it as 0 either way).
        outputs = super()._generate(prompts)
        images = outputs[6]
        if images is not None and any(item is None for item in images) and any(images):
            outputs = (*outputs[:6], [item if item is not None else [] for item in images], *outputs[7:])
        return outputs

    @staticmethod
    def _processor_with_image_tokens(processor, num_image_tokens: int):
        if not hasattr(processor, "num_image_tokens"):
            logger.warning(
                "`num_image_tokens=%d` is ignored: %s has no fixed visual-token count (it follows the image size).",
                num_image_tokens,
                type(processor).__name__,
            )
            return processor
        processor = copy.deepcopy(processor)  # never change the caller's processor
        processor.num_image_tokens = int(num_image_tokens)
        return processor

    def _resolve_num_image_tokens(self, requested: int | None) -> int | None:
        """The visual-token count to inject, validated against the model config (None: model not InfiMed-like)."""
        config = self.model.config
        if not hasattr(config, "num_image_tokens"):
            return None
        value = requested if requested is not None else getattr(self.processing_class, "num_image_tokens", None)
        if value is None:
            return None
        validate = getattr(config, "validate_num_image_tokens", None)
        if validate is not None:
            validate(value)  # raises a ValueError naming the valid counts (square grids up to the patch grid)
        return int(value)

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


def _inject_num_image_tokens(model: torch.nn.Module, num_image_tokens: int) -> None:
    """Make every call of ``model`` (forward, fused log-prob forward, each `generate` step) use ``num_image_tokens``.

    The hook sits on the multimodal wrapper (`model.model`, the module that encodes images): every path reaches it
    through `__call__`, whereas PEFT's LoRA wrapper calls the top-level `forward` directly, skipping its hooks.
    """
    module = model
    while isinstance(getattr(module, "module", None), torch.nn.Module):  # DDP / FSDP wrappers
        module = module.module
    if is_peft_model(module):
        module = module.get_base_model()
    inner = getattr(module, "model", None)
    module = inner if isinstance(inner, torch.nn.Module) else module
    if getattr(module, "_infimed_num_image_tokens_hook", None) is not None:
        module._infimed_num_image_tokens_hook.remove()

    def hook(_module, args, kwargs):
        if kwargs.get("num_image_tokens") is None:
            kwargs["num_image_tokens"] = num_image_tokens
        return args, kwargs

    module._infimed_num_image_tokens_hook = module.register_forward_pre_hook(hook, with_kwargs=True)
