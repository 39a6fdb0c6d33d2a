"""The one stage runner: every stage type goes seed -> load -> data -> trainer -> train -> save -> summary.

What differs between types (the trainer config class and its defaults, how the data is prepared, the trainer class,
the type's summary figures) is a `StageType`; `infimed.training.recipe.STAGE_TYPES` maps each `type:` to one:

    run_stage(stage, recipe, SFT_STAGE, init_model="runs/demo/init", output_dir="runs/demo/sft-1", resume=False)

Every stage loads the previous checkpoint, sets its visual tokens (`num_image_tokens`, on the model config and the
processor, once) and its trainable modules, and saves a full checkpoint (LoRA merged) with its processor, so all
stages hand over checkpoints the same way. Uploading a stage's output is the caller's job (`infimed train`).

With `resume=True` a stage continues from its newest *complete* `checkpoint-*` (`last_checkpoint`); cut ones are
logged and removed. A stage whose checkpoint has already reached its step budget is not trained again: its weights
are loaded, saved and summarised (see docs/reliability.md).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import infimed
from infimed.core.config import ConfigError, config_from_dict
from infimed.modeling import SDPA_VARLEN

from .checkpoints import (
    CheckpointWriteError,
    checkpoint_problem,
    last_checkpoint,
    reached_budget,
    resume_point,
    stage_train_loss,
    writing_to,
)
from .distributed import main_process_first, require_fsdp_when_asked
from .image_tokens import set_num_image_tokens, set_pixel_bounds
from .modules import set_trainable
from .streaming import StreamingPackedDataset
from .stage_data import (
    EmptyDataError,
    load_stage_datasets,
    require_samples,
    sample_token_lengths,
    visual_tokens_per_image,
)

__all__ = [
    "CheckpointWriteError",
    "EmptyDataError",
    "StageType",
    "attention_problem",
    "checkpoint_problem",
    "last_checkpoint",
    "load_stage_datasets",
    "load_stage_model",
    "sample_token_lengths",
    "visual_tokens_per_image",
    "require_samples",
    "lora_config",
    "run_stage",
    "save_stage_output",
    "stage_train_loss",
    "trainer_config",
]

logger = logging.getLogger(__name__)

# Checkpoints kept per stage: the latest for --resume plus one spare in case the latest is cut mid-write.
_SAVE_TOTAL_LIMIT = 2
# Trainer settings a stage gets unless it sets them; they differ from TrainingArguments' own defaults.
STAGE_TRAINER_DEFAULTS = {
    "num_train_epochs": 1.0,  # one pass per stage, as in the paper's stage table (TrainingArguments says 3)
    "learning_rate": 2e-5,  # common full-SFT value
    "warmup_steps": 0.03,  # a float < 1 is a ratio of the total steps in transformers v5 (LLaVA-style 3% warm-up)
    "lr_scheduler_type": "cosine",
    "per_device_train_batch_size": 1,  # packed rows per device and step: a packed row already holds many samples
    "save_total_limit": _SAVE_TOTAL_LIMIT,
}






@dataclass(frozen=True)
class StageType:
    """What one stage type (`sft`, `grpo`) adds to the shared skeleton of `run_stage`.

    Args:
        config_class: its trainer config (`InfiMedSFTConfig`, `InfiMedGRPOConfig`); a stage's trainer keys are its
            fields.
        trainer_class: its trainer, called as `trainer_class(model=, args=, train_dataset=, eval_dataset=,
            processing_class=, peft_config=)`.
        config_defaults: `(stage) -> dict` of type-specific trainer defaults; the stage's own keys win over them.
        build_datasets: `(stage, recipe, processor, args) -> (train, eval or None, summary entries)`.
        summarise: `(trainer, args) -> dict` of the type's summary figures once training is done.
    """

    config_class: type
    trainer_class: type
    config_defaults: Callable[[Any], dict]
    build_datasets: Callable[[Any, Any, Any, Any], tuple[Any, Any, dict]]
    summarise: Callable[[Any, Any], dict]


def trainer_config(stage, recipe, stage_type: StageType, output_dir: str):
    """The stage's trainer config: recipe-wide settings, `STAGE_TRAINER_DEFAULTS`, the type's defaults, then the
    stage's own trainer keys (which win), type-checked by `infimed.core.config.config_from_dict`."""
    import torch  # heavy; only to choose bf16 where it is fast and exact enough

    cuda = torch.cuda.is_available()
    try:
        import tensorboard  # noqa: F401  (optional: log to TensorBoard when it is installed)

        report_to = ["tensorboard"]
    except ImportError:
        report_to = []
    values = {
        "output_dir": output_dir,
        "seed": recipe.seed,
        # bf16 only where it is fast and exact enough (CUDA); CPU autocast to bf16 is slower and lossy.
        "bf16": cuda,
        "use_cpu": not cuda,
        "report_to": report_to,
        **STAGE_TRAINER_DEFAULTS,
        **stage_type.config_defaults(stage),
        **stage.trainer,
    }
    return config_from_dict(stage_type.config_class, values, f"stage {stage.name!r}")












def attention_problem(attn_implementation: str | None) -> str | None:
    """Why `attn_implementation` cannot be used in this environment (unknown, or its kernel is not installed).

    `sdpa_varlen` is InfiMed's own (modeling_infimed/sdpa_varlen.py): sdpa per packed sample, no dense mask."""
    from transformers.utils import (is_flash_attn_2_available, is_flash_attn_3_available,
                                    is_torch_flex_attn_available)

    installed = {"flash_attention_2": (is_flash_attn_2_available, "pip install flash-attn (CUDA only)"),
                 "flash_attention_3": (is_flash_attn_3_available, "install flash-attn 3 from its hopper/ folder"),
                 "flex_attention": (is_torch_flex_attn_available, "upgrade torch to 2.5 or newer")}
    if attn_implementation is None or attn_implementation in ("sdpa", "eager", SDPA_VARLEN):
        return None
    if attn_implementation not in installed:
        return (f"unknown `attn_implementation` {attn_implementation!r}; choose from "
                f"{sorted(['sdpa', 'eager', SDPA_VARLEN, *installed])}.")
    available, how = installed[attn_implementation]
    if not available():
        return (f"`attn_implementation: {attn_implementation}` needs a kernel that is not installed here ({how}); "
                "or use `sdpa`.")
    return None


def load_stage_model(init_model: str, stage, recipe):
    """Load model + processor from `init_model`; apply the stage's `num_image_tokens` and `trainable` groups.

    The stage's `dtype` (`auto`: the checkpoint's own) and `attn_implementation` (None: transformers' default,
    sdpa) choose the weights' precision and the attention kernel. Returns `(model, processor, trainable_counts)`.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    infimed.register()
    problem = attention_problem(stage.attn_implementation)
    if problem:
        raise ConfigError(f"Stage {stage.name!r}: {problem}")
    dtype = stage.dtype if stage.dtype == "auto" else getattr(torch, stage.dtype)
    kernel = {"attn_implementation": stage.attn_implementation} if stage.attn_implementation else {}
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            init_model, trust_remote_code=recipe.trust_remote_code, dtype=dtype, **kernel
        )
        processor = AutoProcessor.from_pretrained(init_model, trust_remote_code=recipe.trust_remote_code)
    except ValueError as err:
        if recipe.trust_remote_code or "trust_remote_code" not in str(err):
            raise
        raise ConfigError(
            f"Stage {stage.name!r}: {init_model} ships its own model code (`auto_map` in config.json), which runs "
            "only with an opt-in. If you trust its author, set `trust_remote_code: true` at the top level of the "
            "recipe (beside `model:`); InfiMed checkpoints load without it."
        ) from err
    set_num_image_tokens(model, processor, stage.num_image_tokens, f"Stage {stage.name!r}")
    set_pixel_bounds(processor, stage.min_pixels, stage.max_pixels, f"Stage {stage.name!r}")
    counts = set_trainable(model, stage.trainable)
    return model, processor, counts
















def lora_config(spec, trainable):
    """A PEFT `LoraConfig` for the LLM; other trainable groups (e.g. the projector) train fully as modules_to_save."""
    from peft import LoraConfig  # optional dependency: only LoRA stages need it

    modules_to_save = []
    if "projector" in trainable:
        modules_to_save.append("multi_modal_projector")
    if "vision" in trainable:
        modules_to_save.append("vision_tower")
    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=spec.target_modules, modules_to_save=modules_to_save or None,
                      task_type="CAUSAL_LM")


def save_stage_output(trainer, processor, output_dir: str) -> None:
    """Write the trained model as a full checkpoint (LoRA merged) with its processor to `output_dir`, once.

    Every process calls this: `trainer.save_model` gathers the full state dict under FSDP and DeepSpeed ZeRO-3 (a
    collective, so all ranks take part) and the main process alone writes it. A sharded FSDP state dict type is
    switched to a full one for this save, since the next stage loads the folder with `from_pretrained`.
    """
    model = trainer.model
    with writing_to(output_dir):
        if hasattr(model, "merge_and_unload"):  # PEFT: each process holds the full model (DDP or one process)
            merged = model.merge_and_unload()
            if trainer.args.should_save:
                merged.save_pretrained(output_dir)
                processor.save_pretrained(output_dir)
            return
        if trainer.is_fsdp_enabled:
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(output_dir)  # writes the processor (`processing_class`) too


def run_stage(stage, recipe, stage_type: StageType, init_model: str, output_dir: str, resume: bool) -> dict:
    """Train one stage from `init_model`; write a full checkpoint to `output_dir`; return its (JSON-able) summary."""
    from transformers import set_seed

    start = time.time()
    set_seed(recipe.seed)
    model, processor, trainable = load_stage_model(init_model, stage, recipe)
    args = trainer_config(stage, recipe, stage_type, output_dir)
    train_dataset, eval_dataset, data_summary = stage_type.build_datasets(stage, recipe, processor, args)
    peft_config = lora_config(stage.lora, stage.trainable) if stage.lora is not None else None
    trainer = stage_type.trainer_class(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                                       processing_class=processor, peft_config=peft_config)
    require_fsdp_when_asked(trainer, stage.name)
    # Drops made while the trainer prepares the data (the SFT packer's), or those the stage type counted before.
    dropped = getattr(trainer, "dropped_samples", None) or data_summary.get("dropped") or {}
    if not isinstance(trainer.train_dataset, StreamingPackedDataset):  # a stream counts its samples as it reads
        require_samples(stage.name, len(train_dataset), len(trainer.train_dataset), dropped)
    if peft_config is not None and (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        raise ConfigError(
            f"Stage {stage.name!r}: `lora` is not supported under FSDP or DeepSpeed (the adapters would be merged into "
            "sharded weights). Launch LoRA stages with DDP (`recipes/accelerate/ddp.yaml`) or one process, or drop "
            "the `lora` block for full fine-tuning."
        )
    with main_process_first():  # the main process removes cut checkpoints before the others look
        checkpoint, state = resume_point(output_dir, args) if resume else (None, None)
    if checkpoint and reached_budget(state, args):
        # Trained to the end but not summarised (cut in the final save, or a failed push): training again would run
        # step max_steps + 1. Load the last checkpoint's weights and state instead, then save and summarise.
        logger.info("Stage %s already reached step %d in %s; saving it without training.", stage.name,
                    state.global_step, checkpoint)
        trainer._load_from_checkpoint(checkpoint)  # the Trainer's own loader: full, sharded and PEFT checkpoints
        trainer.state = state
        trained_loss = None
    else:
        if checkpoint:
            logger.info("Stage %s resumes from %s", stage.name, checkpoint)
        with writing_to(output_dir):
            trained_loss = trainer.train(resume_from_checkpoint=checkpoint).training_loss
    save_stage_output(trainer, processor, output_dir)
    resumed_at = state.global_step if state is not None else 0
    train_loss = stage_train_loss(trainer.state.log_history, resumed_at, trained_loss, trainer.state.global_step)
    return {
        "steps": trainer.state.global_step,
        "seconds": round(time.time() - start, 2),
        "train_loss": train_loss,
        **stage_type.summarise(trainer, args),
        "num_image_tokens": getattr(model.config, "num_image_tokens", None),
        "trainable": stage.trainable,
        "trainable_parameters": trainable,
        "lora": dataclasses.asdict(stage.lora) if stage.lora is not None else None,
        **data_summary,
        "resumed_from": checkpoint,
        "log_history": trainer.state.log_history,
    }
