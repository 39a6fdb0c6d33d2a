"""The `sft` stage type of a recipe: packed supervised fine-tuning with `InfiMedSFTTrainer`.

A stage's trainer keys are `InfiMedSFTConfig` fields, written next to its data keys (see `infimed.training.recipe`);
`max_length` is the stage's packed-row length. `infimed.training.stages.run_stage` runs it with these hooks.
"""

from __future__ import annotations

from .sft_config import InfiMedSFTConfig
from .sft_trainer import InfiMedSFTTrainer
from .stage_data import load_stage_stream
from .stages import StageType, load_stage_datasets
from .streaming import StreamingPackedDataset, trained_summary

__all__ = ["SFT_STAGE"]


def _config_defaults(stage) -> dict:
    # Every 10 steps: SFT stages run hundreds to thousands of steps, and each log line holds the packing figures.
    return {"max_length": stage.max_length, "packing": True, "logging_steps": 10}


def _datasets(stage, recipe, processor, args):
    if stage.datasets[0].streaming:  # all or none stream (StageSpec); the trainer packs the stream on the fly
        train_dataset, mix_report = load_stage_stream(stage.datasets, recipe.seed, stage.name)
    else:
        # The processor counts each row's tokens (text + images x visual tokens): mixing by tokens, and the report.
        train_dataset, mix_report = load_stage_datasets(stage.datasets, recipe.seed, stage.name, processor)
    eval_dataset = None
    if stage.eval_datasets:
        eval_dataset = load_stage_datasets(stage.eval_datasets, recipe.seed, stage.name, processor)[0]
    return train_dataset, eval_dataset, {"mixing": mix_report}


def _summarise(trainer, args) -> dict:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    streamed = isinstance(trainer.train_dataset, StreamingPackedDataset)
    if streamed:  # the rows the steps trained, on every process together
        packing = trained_summary(trainer.train_dataset, args, trainer.state.global_step)
    else:
        packing = trainer.packing_summary.get("train", {})
    dropped = packing["dropped"]["by_reason"] if streamed else trainer.dropped_samples
    return {
        "final_loss": losses[-1] if losses else None,
        "packing_efficiency": packing.get("packing_efficiency"),
        "images_per_row": packing.get("images_per_row"),
        "samples_per_row": packing.get("samples_per_row"),
        "rows": packing.get("rows"),
        "samples": packing.get("samples"),
        "dropped": dropped,
        "streaming": streamed,
        "dropped_examples": packing.get("dropped", {}).get("examples", {}),
        # Samples the collator skipped while training (an image that would not decode), summed over ranks.
        "skipped_in_training": trainer.skipped_in_training,
    }


SFT_STAGE = StageType(config_class=InfiMedSFTConfig, trainer_class=InfiMedSFTTrainer,
                      config_defaults=_config_defaults, build_datasets=_datasets, summarise=_summarise)
