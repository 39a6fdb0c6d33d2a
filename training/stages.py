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

import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from safetensors import safe_open

import infimed

from infimed.core.config import ConfigError, config_from_dict
from infimed.core.errors import InfiMedError
from infimed.core.datasets import as_image_list, load_hub, load_local
from infimed.data.mixing import MixSource, mix_sources

from .distributed import main_process_first
from .image_tokens import set_num_image_tokens, set_pixel_bounds
from .modules import set_trainable

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
# Columns training reads; the others are dropped before mixing (sources are concatenated).
_TRAINING_COLUMNS = ("id", "images", "messages", "prompt", "completion", "answer", "kind", "options", "question")
# Distinct column values an empty `where` selection lists, to show what the column does hold.
_VALUES_SHOWN = 8
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
_FSDP_MODEL = "pytorch_model_fsdp"  # accelerate's FSDP_MODEL_NAME: the Trainer's FSDP checkpoints
# What a failed write looks like: errno values of a full or read-only disk, and torch.save's C++ writer messages
# (`inline_container.cc: PytorchStreamWriter failed writing file`), which carry no errno.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_WRITE_MESSAGES = ("No space left on device", "Disk quota exceeded", "PytorchStreamWriter failed", "file write failed")


class EmptyDataError(InfiMedError, ValueError):
    """A stage has no training sample left after its `where` filters or its drops; the message counts them."""


class CheckpointWriteError(InfiMedError, OSError):
    """Saving a checkpoint or a stage's output failed (full disk, quota, read-only folder); names folder and space."""


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


def checkpoint_problem(folder: str) -> str | None:
    """Why the `checkpoint-*` folder cannot be resumed from (a save cut short), or None when it is complete.

    Complete means: `trainer_state.json` parses, every weights file (`model.safetensors`, the shards of
    `model.safetensors.index.json`, or a PEFT `adapter_model.safetensors`) has a readable safetensors header that
    covers the file, and the optimizer and scheduler states exist. Checkpoints written under FSDP or DeepSpeed are
    complete when their own end-of-save marker exists (`_sharded_problem`).
    """
    try:
        with open(os.path.join(folder, "trainer_state.json")) as f:
            json.load(f)
    except FileNotFoundError:
        return "no trainer_state.json"
    except (OSError, ValueError) as err:
        return f"trainer_state.json does not parse ({err})"
    sharded = _sharded_problem(folder)
    if sharded is not None:
        return sharded or (None if os.path.exists(os.path.join(folder, "scheduler.pt")) else "no scheduler.pt")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        try:
            with open(index) as f:
                weights = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError) as err:
            return f"model.safetensors.index.json does not parse ({err})"
    else:
        names = ("model.safetensors", "adapter_model.safetensors")
        weights = [n for n in names if os.path.exists(os.path.join(folder, n))]
        if not weights:
            return "no model.safetensors (or adapter_model.safetensors)"
    for name in weights:
        try:
            with safe_open(os.path.join(folder, name), "pt") as f:
                f.keys()
        except Exception as err:  # SafetensorError (a cut file) derives from Exception only
            return f"{name} does not load ({err})"
    if not any(os.path.exists(os.path.join(folder, n)) for n in ("optimizer.pt", "optimizer.bin")):
        return "no optimizer state (optimizer.pt)"
    if not os.path.exists(os.path.join(folder, "scheduler.pt")):
        return "no scheduler state (scheduler.pt)"
    return None


def _sharded_problem(folder: str) -> str | None:
    """For a checkpoint the Trainer wrote under FSDP or DeepSpeed: "" when complete, else why not; None otherwise.

    FSDP's sharded folders (`pytorch_model_fsdp_0`, `optimizer_0`) are torch.distributed.checkpoint folders, whose
    `.metadata` is written once every shard is; DeepSpeed writes `latest` once its `global_step*` folder is complete.
    """
    fsdp = [name for name in (f"{_FSDP_MODEL}_0", "optimizer_0") if os.path.isdir(os.path.join(folder, name))]
    if fsdp:
        cut = [name for name in fsdp if not os.path.exists(os.path.join(folder, name, ".metadata"))]
        return f"FSDP folder(s) {cut} have no .metadata" if cut else ("" if len(fsdp) == 2 else "no FSDP optimizer_0")
    if any(name.startswith("global_step") for name in os.listdir(folder)):
        return "" if os.path.exists(os.path.join(folder, "latest")) else "DeepSpeed checkpoint without `latest`"
    return None


def last_checkpoint(output_dir: str, skipped: dict[str, str] | None = None) -> str | None:
    """The newest complete `checkpoint-*` folder in `output_dir` (what `--resume` continues from), or None.

    Each newer, incomplete one is logged with the reason (`checkpoint_problem`) and recorded in `skipped`
    (folder -> reason) when given.
    """
    if not os.path.isdir(output_dir):
        return None
    numbered = [(int(m.group(1)), name) for name in os.listdir(output_dir)
                if (m := _CHECKPOINT.fullmatch(name)) and os.path.isdir(os.path.join(output_dir, name))]
    for _, name in sorted(numbered, reverse=True):
        folder = os.path.join(output_dir, name)
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        logger.warning("Skipping checkpoint %s: %s (a save cut short); trying the one before it.", folder, problem)
        if skipped is not None:
            skipped[folder] = problem
    return None


def _free_space(path: str) -> str:
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        return f"{shutil.disk_usage(path or '.').free / 2**30:.2f} GiB"
    except OSError:
        return "unknown space"


@contextlib.contextmanager
def _writing(folder: str):
    """Turn a failed write under `folder` (full disk, quota, read-only) into one error naming it and its free space."""
    try:
        yield
    except Exception as err:  # torch.save raises RuntimeError, safetensors SafetensorError, the OS OSError
        if getattr(err, "errno", None) not in _WRITE_ERRNOS and not any(m in str(err) for m in _WRITE_MESSAGES):
            raise
        raise CheckpointWriteError(
            f"Writing to {folder} failed ({str(err).strip().splitlines()[0]}); {_free_space(folder)} free there. "
            "Free some space (or lower the stage's `save_total_limit`), then rerun with `--resume`: it continues "
            "from the last complete checkpoint."
        ) from err


def attention_problem(attn_implementation: str | None) -> str | None:
    """Why `attn_implementation` cannot be used in this environment (unknown, or its kernel is not installed)."""
    from transformers.utils import (is_flash_attn_2_available, is_flash_attn_3_available,
                                    is_torch_flex_attn_available)

    installed = {"flash_attention_2": (is_flash_attn_2_available, "pip install flash-attn (CUDA only)"),
                 "flash_attention_3": (is_flash_attn_3_available, "install flash-attn 3 from its hopper/ folder"),
                 "flex_attention": (is_torch_flex_attn_available, "upgrade torch to 2.5 or newer")}
    if attn_implementation is None or attn_implementation in ("sdpa", "eager"):
        return None
    if attn_implementation not in installed:
        return (f"unknown `attn_implementation` {attn_implementation!r}; choose from "
                f"{sorted(['sdpa', 'eager', *installed])}.")
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


def _load_one(spec):
    if spec.hub_id is not None:
        return load_hub(spec.hub_id, spec.config, spec.split)
    return load_local(spec.path, spec.split)


def _training_columns(dataset):
    """Keep the columns training reads; images stay undecoded so mixing never decodes (or chokes on) them."""
    dataset = dataset.select_columns([c for c in _TRAINING_COLUMNS if c in dataset.column_names])
    if "images" not in dataset.column_names:
        dataset = dataset.add_column("images", [[] for _ in range(len(dataset))])
    return as_image_list(dataset, "images")


def _where(dataset, where: dict | None, label: str, stage_name: str | None):
    if not where:
        return dataset
    missing = sorted(set(where) - set(dataset.column_names))
    if missing:
        raise ValueError(f"Dataset {label!r}: `where` names column(s) {missing} it does not have "
                         f"(columns: {dataset.column_names}).")
    wanted = {col: set(v) if isinstance(v, (list, tuple)) else {v} for col, v in where.items()}
    columns = list(wanted)
    selected = dataset.filter(lambda *values: all(v in wanted[c] for c, v in zip(columns, values)),
                              input_columns=columns, desc=f"Selecting {label}")
    if len(selected) == 0:
        # The values the columns do hold (most common first): usually a typo or another spelling of a kind.
        present = {c: [v for v, _ in Counter(map(str, dataset[c])).most_common(_VALUES_SHOWN)] for c in columns}
        raise EmptyDataError(
            f"{f'Stage {stage_name!r}: ' if stage_name else ''}dataset {label!r}: `where: {where}` selects 0 of "
            f"{len(dataset)} rows; the rows hold {present}. Fix the `where` values or the dataset `path`."
        )
    return selected


def require_samples(stage_name: str, loaded: int, kept: int, dropped: dict[str, int]) -> None:
    """Raise one `EmptyDataError` naming the stage and the drops by reason when no training sample is left."""
    if kept > 0:
        return
    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(dropped.items(), key=lambda kv: -kv[1])) or "none"
    raise EmptyDataError(
        f"Stage {stage_name!r}: no training sample left: {loaded} loaded, all dropped (by reason: {reasons}). Check "
        "the stage's `datasets` (paths, `where`, `count`) and the limits the reasons name (e.g. `max_length`)."
    )


def visual_tokens_per_image(processor) -> int | None:
    """Tokens one image takes in a sample: the processor's fixed count (InfiMed), or the most a dynamic-resolution
    processor gives (Qwen2.5-VL: `longest_edge` pixels / (patch x merge)^2, an upper bound); None when unknown."""
    if getattr(processor, "num_image_tokens", None):
        return int(processor.num_image_tokens)
    image_processor = getattr(processor, "image_processor", None)
    size, patch, merge = (getattr(image_processor, key, None) for key in ("size", "patch_size", "merge_size"))
    if size is None or patch is None or merge is None:
        return None
    longest = size["longest_edge"] if isinstance(size, dict) else getattr(size, "longest_edge", None)
    return None if longest is None else int(longest // (patch * merge) ** 2)


def sample_token_lengths(dataset, processor, image_tokens: int, batch_size: int = 1000) -> list[int]:
    """Tokens of each row as training will see them, from its text and image count alone (no image is decoded).

    The chat template is rendered as text and tokenized; each image placeholder token then counts as
    `image_tokens` (what the processor expands it to). Rows with `prompt`/`completion` columns (GRPO) count both.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    image_token_id = getattr(processor, "image_token_id", None)
    text_columns = [c for c in ("messages", "prompt", "completion") if c in dataset.column_names]
    lengths: list[int] = []
    for batch in dataset.select_columns([*text_columns, "images"]).iter(batch_size=batch_size):
        texts = ["".join(processor.apply_chat_template(batch[c][i], tokenize=False) if isinstance(batch[c][i], list)
                         else str(batch[c][i] or "") for c in text_columns) for i in range(len(batch["images"]))]
        for ids, images in zip(tokenizer(texts, add_special_tokens=False)["input_ids"], batch["images"]):
            placeholders = sum(token == image_token_id for token in ids) if image_token_id is not None else 0
            lengths.append(len(ids) - placeholders + len(images or []) * image_tokens)
    return lengths


def load_stage_datasets(specs, seed: int, stage_name: str | None = None, processor=None):
    """Mix the stage's sources with `infimed.data.mixing.mix_sources`; return `(dataset, mixing report)`.

    With the stage's `processor`, every row's tokens are counted (`sample_token_lengths`, no image decoding), so
    sources can ask for `tokens`/`token_weight` and the report gives each source's requested and taken tokens.
    A `where` that selects no row raises `EmptyDataError` naming `stage_name`, the dataset and the values it holds;
    a source that cannot give what it is asked raises naming it (unless it sets `allow_repeat`/`allow_shortfall`).
    """
    where = f"Stage {stage_name!r}: " if stage_name else ""
    by_tokens = [spec.label for spec in specs if spec.tokens is not None or spec.token_weight is not None]
    image_tokens = visual_tokens_per_image(processor) if processor is not None else None
    if by_tokens and (processor is None or image_tokens is None):
        missing = "the stage's processor" if processor is None else "a visual-token count per image"
        raise ConfigError(f"{where}dataset(s) {by_tokens} mix by tokens, which needs {missing} to count each row's "
                          "tokens; use `count`/`weight` for this stage, or set its `num_image_tokens`.")
    loaded = [_training_columns(_where(_load_one(spec), spec.where, spec.label, stage_name)) for spec in specs]
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
        lengths = sample_token_lengths(dataset, processor, image_tokens) if image_tokens is not None else None
        sources.append(MixSource(dataset, name, weight=spec.weight, count=spec.count, token_weight=spec.token_weight,
                                 tokens=spec.tokens, lengths=lengths, allow_repeat=spec.allow_repeat,
                                 allow_shortfall=spec.allow_shortfall))
    try:
        mixed, report = mix_sources(sources, seed=seed)
    except ValueError as err:
        raise ConfigError(f"{where}{err}") from err
    report["visual_tokens_per_image"] = image_tokens
    return mixed, report


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
    with _writing(output_dir):
        if hasattr(model, "merge_and_unload"):  # PEFT: each process holds the full model (DDP or one process)
            merged = model.merge_and_unload()
            if trainer.args.should_save:
                merged.save_pretrained(output_dir)
                processor.save_pretrained(output_dir)
            return
        if trainer.is_fsdp_enabled:
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(output_dir)  # writes the processor (`processing_class`) too


def stage_train_loss(log_history: list[dict], resumed_at: int, resumed_loss: float | None, last_step: int):
    """Mean training loss per step over the whole stage, also when it was resumed at step `resumed_at`.

    Steps up to `resumed_at` count with the losses logged before the cut (each `loss` entry covers the steps since
    the previous one, as the Trainer logs them); the steps after it with the Trainer's own mean (`resumed_loss`).
    """
    total, covered, previous = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and previous < entry.get("step", 0) <= resumed_at:
            total += entry["loss"] * (entry["step"] - previous)
            covered, previous = covered + entry["step"] - previous, entry["step"]
    after = last_step - resumed_at
    if after > 0 and resumed_loss is not None:
        total, covered = total + resumed_loss * after, covered + after
    return total / covered if covered else resumed_loss


def _resume_point(output_dir: str, args) -> tuple[str | None, Any]:
    """The checkpoint to resume from (cut ones removed, with a log line) and its `TrainerState`, or (None, None)."""
    from transformers import TrainerState

    skipped: dict[str, str] = {}
    checkpoint = last_checkpoint(output_dir, skipped)
    for folder in skipped:  # removed, so the Trainer's rotation never keeps a cut folder in place of a good one
        shutil.rmtree(folder, ignore_errors=True)
    if checkpoint is None:
        return None, None
    return checkpoint, TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))


def _finished(state, args) -> bool:
    """Whether a checkpoint's state has used the stage's step budget (`max_steps`, else the epochs it computed)."""
    budget = args.max_steps if args.max_steps > 0 else state.max_steps
    return state.global_step >= budget > 0


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
    # Drops made while the trainer prepares the data (the SFT packer's), or those the stage type counted before.
    dropped = getattr(trainer, "dropped_samples", None) or data_summary.get("dropped") or {}
    require_samples(stage.name, len(train_dataset), len(trainer.train_dataset), dropped)
    if peft_config is not None and (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        raise ConfigError(
            f"Stage {stage.name!r}: `lora` is not supported under FSDP or DeepSpeed (the adapters would be merged into "
            "sharded weights). Launch LoRA stages with DDP (`recipes/accelerate/ddp.yaml`) or one process, or drop "
            "the `lora` block for full fine-tuning."
        )
    with main_process_first():  # the main process removes cut checkpoints before the others look
        checkpoint, state = _resume_point(output_dir, args) if resume else (None, None)
    if checkpoint and _finished(state, args):
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
        with _writing(output_dir):
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
