"""The `sft` stage of a recipe: packed supervised fine-tuning with `InfiMedSFTTrainer`.

Called by `infimed.training.recipe` as `run(stage, recipe, init_model, output_dir, resume) -> dict`.
"""

from __future__ import annotations

import dataclasses
import logging
import time

__all__ = ["run", "build_sft_config"]

logger = logging.getLogger(__name__)

# Checkpoints kept per stage: the latest for --resume plus one spare in case the latest is cut mid-write.
_SAVE_TOTAL_LIMIT = 2


def build_sft_config(stage, recipe, output_dir: str):
    """`InfiMedSFTConfig` from the stage's common keys and its `sft:` block (which wins on conflicts)."""
    from .sft_config import InfiMedSFTConfig
    from .stages import stage_trainer_config

    return stage_trainer_config(
        InfiMedSFTConfig, stage, recipe, output_dir, stage.sft, "sft",
        max_length=stage.max_length, packing=True, save_total_limit=_SAVE_TOTAL_LIMIT, logging_steps=10,
    )


def run(stage, recipe, init_model: str, output_dir: str, resume: bool) -> dict:
    """Train one SFT stage from `init_model`; write a full checkpoint to `output_dir`; return its summary."""
    from transformers import set_seed

    from .sft_trainer import InfiMedSFTTrainer
    from .stages import (
        last_checkpoint as _last_checkpoint,
        load_stage_datasets,
        load_stage_model,
        lora_config,
        push_stage_output,
        save_stage_output,
    )

    start = time.time()
    set_seed(recipe.seed)
    model, processor, trainable = load_stage_model(init_model, stage, recipe)
    train_dataset, mix_report = load_stage_datasets(stage.datasets, recipe.seed)
    eval_dataset = load_stage_datasets(stage.eval_datasets, recipe.seed)[0] if stage.eval_datasets else None
    args = build_sft_config(stage, recipe, output_dir)
    peft_config = lora_config(stage.lora, stage.trainable) if stage.lora is not None else None
    trainer = InfiMedSFTTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                                processing_class=processor, peft_config=peft_config)
    checkpoint = _last_checkpoint(output_dir) if resume else None
    if checkpoint:
        logger.info("Stage %s resumes from %s", stage.name, checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    save_stage_output(trainer.model, processor, output_dir)

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    packing = trainer.packing_summary.get("train", {})
    summary = {
        "steps": trainer.state.global_step,
        "seconds": round(time.time() - start, 2),
        "train_loss": result.training_loss,
        "final_loss": losses[-1] if losses else None,
        "num_image_tokens": getattr(trainer.model.config, "num_image_tokens", None),
        "trainable": stage.trainable,
        "trainable_parameters": trainable,
        "lora": dataclasses.asdict(stage.lora) if stage.lora is not None else None,
        "packing_efficiency": packing.get("packing_efficiency"),
        "images_per_row": packing.get("images_per_row"),
        "samples_per_row": packing.get("samples_per_row"),
        "rows": packing.get("rows"),
        "samples": packing.get("samples"),
        "dropped": trainer.dropped_samples,
        "dropped_examples": packing.get("dropped", {}).get("examples", {}),
        "mixing": mix_report,
        "resumed_from": checkpoint,
        "log_history": trainer.state.log_history,
    }
    if stage.push_to_hub:
        summary["pushed_to"] = push_stage_output(output_dir, stage.push_to_hub)
    return summary
