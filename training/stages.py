"""What every stage type shares: load the previous checkpoint, set the stage's visual tokens and trainable modules,
build the stage's data mix, save a full checkpoint (LoRA merged), and optionally push it to the Hub.

The SFT stage (`sft_stage.py`) and the GRPO stage use these, so all stages hand over checkpoints the same way.
"""

from __future__ import annotations

import glob
import logging
import os
import warnings

__all__ = ["load_stage_model", "load_stage_datasets", "lora_config", "save_stage_output", "push_stage_output"]

logger = logging.getLogger(__name__)


def stage_trainer_config(config_class, stage, recipe, output_dir: str, block: dict, block_name: str, **specific):
    """`config_class` (InfiMedSFTConfig / InfiMedGRPOConfig) from the stage's common keys, the type-specific
    `specific` defaults and the stage's `sft:` / `grpo:` block, which wins on conflicts."""
    import dataclasses

    import torch

    unknown = sorted(set(block) - {f.name for f in dataclasses.fields(config_class)})
    if unknown:
        raise ValueError(f"Stage {stage.name!r}: unknown `{block_name}` key(s) {unknown}; they must be "
                         f"{config_class.__name__} fields (see `infimed.training.{config_class.__name__}`).")
    cuda = torch.cuda.is_available()
    try:
        import tensorboard  # noqa: F401

        report_to = ["tensorboard"]
    except ImportError:
        report_to = []
    kwargs = dict(
        output_dir=output_dir,
        seed=recipe.seed,
        num_train_epochs=stage.epochs,
        max_steps=stage.max_steps,
        learning_rate=stage.learning_rate,
        weight_decay=stage.weight_decay,
        warmup_steps=stage.warmup_ratio,  # a float < 1 is a ratio of the total steps in transformers v5
        lr_scheduler_type=stage.lr_scheduler_type,
        per_device_train_batch_size=stage.per_device_train_batch_size,
        gradient_accumulation_steps=stage.gradient_accumulation_steps,
        # bf16 only where it is fast and exact enough (CUDA); CPU autocast to bf16 is slower and lossy.
        bf16=cuda,
        use_cpu=not cuda,
        report_to=report_to,
        **specific,
    )
    kwargs.update(block)
    return config_class(**kwargs)


def last_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-*` folder in `output_dir` (what `--resume` continues from), or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None


def load_stage_model(init_model: str, stage, recipe, *, dtype=None):
    """Load model + processor from `init_model`; apply the stage's `num_image_tokens` and `trainable` groups.

    Returns `(model, processor, trainable_counts)`.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import infimed  # noqa: F401  (registers the InfiMed Auto classes)

    from .modules import set_trainable

    model = AutoModelForImageTextToText.from_pretrained(
        init_model, trust_remote_code=recipe.trust_remote_code, dtype=dtype or torch.float32
    )
    processor = AutoProcessor.from_pretrained(init_model, trust_remote_code=recipe.trust_remote_code)
    if stage.num_image_tokens is not None:
        if hasattr(model.config, "num_image_tokens") and hasattr(processor, "num_image_tokens"):
            # The stage's resolution lives in the config, so the saved checkpoint generates at it by default.
            model.config.num_image_tokens = stage.num_image_tokens
            processor.num_image_tokens = stage.num_image_tokens
        else:
            warnings.warn(
                f"Stage {stage.name!r} sets `num_image_tokens` but {type(model).__name__} has no fixed number of "
                "visual tokens per image (e.g. dynamic-resolution Qwen2.5-VL); the setting is ignored.",
                stacklevel=2,
            )
    counts = set_trainable(model, stage.trainable)
    return model, processor, counts


def _load_one(spec, seed):
    import datasets

    if spec.hub_id is not None:
        return datasets.load_dataset(spec.hub_id, spec.config, split=spec.split)
    path = spec.path
    is_saved = any(os.path.exists(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json"))
    if os.path.isdir(path) and not is_saved:
        # A folder of data files, e.g. the parquet shards `infimed curate` writes. The files are listed explicitly:
        # `load_dataset(folder)` can return a stale cached copy of an earlier folder of the same name (seen with
        # datasets 5.2), while the parquet builder keys its cache on each file's path and modification time.
        files = sorted(glob.glob(os.path.join(path, "**", f"{spec.split}-*.parquet"), recursive=True))
        files = files or sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
        if not files:
            raise ValueError(f"{path} is neither a `save_to_disk` folder nor a folder of parquet files; point the "
                             "recipe at the output of `infimed curate` or `infimed demo-data`.")
        return datasets.load_dataset("parquet", data_files=files, split="train")
    if os.path.isdir(path):
        loaded = datasets.load_from_disk(path)
        if isinstance(loaded, datasets.DatasetDict):
            if spec.split not in loaded:
                raise ValueError(f"{path} has splits {list(loaded)}, not {spec.split!r}.")
            return loaded[spec.split]
        return loaded
    if not os.path.exists(path):
        raise ValueError(f"Dataset path {path!r} does not exist. Create the demo data with `infimed demo-data "
                         f"--output {path}` or point the recipe at your data.")
    ext = os.path.splitext(path)[1].lstrip(".")
    builder = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}.get(ext)
    if builder is None:
        raise ValueError(f"Unsupported data file {path!r}: use a `save_to_disk` folder, .jsonl/.json, .parquet or .csv.")
    return datasets.load_dataset(builder, data_files=path, split="train")


def _training_columns(dataset):
    """Keep the columns training reads; images stay undecoded so mixing never decodes (or chokes on) them."""
    import datasets

    keep = [c for c in ("id", "images", "messages", "prompt", "completion", "answer", "kind", "options", "question")
            if c in dataset.column_names]
    dataset = dataset.select_columns(keep)
    if "images" not in dataset.column_names:
        dataset = dataset.add_column("images", [[] for _ in range(len(dataset))])
    return dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))


def _where(dataset, where: dict | None, label: str):
    if not where:
        return dataset
    missing = sorted(set(where) - set(dataset.column_names))
    if missing:
        raise ValueError(f"Dataset {label!r}: `where` names column(s) {missing} it does not have "
                         f"(columns: {dataset.column_names}).")
    wanted = {col: set(v) if isinstance(v, (list, tuple)) else {v} for col, v in where.items()}
    columns = list(wanted)
    return dataset.filter(lambda *values: all(v in wanted[c] for c, v in zip(columns, values)),
                          input_columns=columns, desc=f"Selecting {label}")


def load_stage_datasets(specs, seed: int):
    """Mix the stage's sources with `infimed.data.mixing.mix_sources`; return `(dataset, mixing report)`."""
    from infimed.data.mixing import MixSource, mix_sources

    loaded = [_training_columns(_where(_load_one(spec, seed), spec.where, spec.label)) for spec in specs]
    # Sources are concatenated, so they keep only the columns they all have (`images` is added where missing).
    common = set.intersection(*(set(d.column_names) for d in loaded))
    sources = []
    for i, (spec, dataset) in enumerate(zip(specs, loaded)):
        # mix_sources needs unique names; two selections of one folder get their position appended
        name = spec.label if sum(s.label == spec.label for s in specs) == 1 else f"{spec.label}#{i}"
        dataset = dataset.select_columns([c for c in loaded[0].column_names if c in common])
        if sources and dataset.features != sources[0].dataset.features:
            try:  # e.g. `text: null` vs absent in image blocks: same data, different inferred schema
                dataset = dataset.cast(sources[0].dataset.features)
            except (ValueError, TypeError) as err:
                raise ValueError(f"Dataset {name!r} cannot be mixed with {sources[0].name!r}: their columns have "
                                 f"different types ({err}). Convert both to the TRL vision format first.") from err
        sources.append(MixSource(dataset, name, weight=spec.weight, count=spec.count))
    return mix_sources(sources, seed=seed)


def lora_config(spec, trainable):
    """A PEFT `LoraConfig` for the LLM; other trainable groups (e.g. the projector) train fully as modules_to_save."""
    from peft import LoraConfig

    modules_to_save = []
    if "projector" in trainable:
        modules_to_save.append("multi_modal_projector")
    if "vision" in trainable:
        modules_to_save.append("vision_tower")
    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=spec.target_modules, modules_to_save=modules_to_save or None,
                      task_type="CAUSAL_LM")


def save_stage_output(model, processor, output_dir: str) -> None:
    """Write a full checkpoint (adapters merged) with its processor to `output_dir`."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)


def push_stage_output(output_dir: str, repo_id: str) -> str:
    """Upload the stage checkpoint with `infimed.hub.push_model`."""
    try:
        from infimed.hub import push_model
    except ImportError as err:
        raise ValueError(
            f"`push_to_hub: {repo_id}` needs `infimed.hub.push_model`, which cannot be imported ({err}). Remove "
            "`push_to_hub` from the stage, or upload later with `infimed push-model`."
        ) from err
    return push_model(output_dir, repo_id=repo_id)
