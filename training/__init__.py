"""Training: multimodal sequence packing, `InfiMedSFTTrainer`, multi-stage recipes (and GRPO, see `grpo_*`).

Names are imported on first use, so `import infimed.training` stays cheap (no torch/TRL import).

    from infimed.training import InfiMedSFTConfig, InfiMedSFTTrainer, load_recipe, run_recipe
"""

import importlib

# public name -> module under infimed.training
_EXPORTS = {
    "PackingBudget": "packing",
    "PackingResult": "packing",
    "pack_best_fit_decreasing": "packing",
    "DataCollatorForPackedVisionLanguageModeling": "collator",
    "DROP_REASONS": "samples",
    "DropReport": "samples",
    "SampleEncoder": "samples",
    "PackedDataset": "packed_dataset",
    "build_packed_dataset": "packed_dataset",
    "InfiMedSFTConfig": "sft_config",
    "InfiMedSFTTrainer": "sft_trainer",
    "set_trainable": "modules",
    "STAGE_TYPES": "recipe",
    "StageType": "stages",
    "run_stage": "stages",
    "Recipe": "recipe",
    "StageSpec": "recipe",
    "DatasetSpec": "recipe",
    "LoraSpec": "recipe",
    "load_recipe": "recipe",
    "run_recipe": "recipe",
    "InfiMedGRPOConfig": "grpo_config",
    "InfiMedGRPOTrainer": "grpo_trainer",
    "REWARD_FUNCS": "rewards",
    "format_reward": "rewards",
    "accuracy_reward": "rewards",
    "length_penalty": "rewards",
    "CoTSynthesisConfig": "cot_synthesis",
    "synthesize_cot": "cot_synthesis",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
