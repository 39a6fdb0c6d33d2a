"""Multi-stage training recipes: one YAML file describes the whole pipeline; each stage starts where the last ended.

    infimed train recipes/demo.yaml                      # all stages
    infimed train recipes/demo.yaml --stage sft-2        # one stage (from the previous stage's output)
    infimed train recipes/demo.yaml --resume             # skip finished stages, resume the interrupted one

A recipe:

    model: tiny                     # preset name (random init / composed from parts) or a checkpoint path / Hub id
    output_dir: runs/demo
    seed: 42
    stages:
      - name: pretrain
        type: sft                   # sft | grpo (STAGE_TYPES)
        datasets: [{path: demo-output/data, split: train, weight: 1.0}]
        num_image_tokens: 16        # low-to-high resolution: 16 here, 64 later
        trainable: [projector, llm] # vision stays frozen unless listed
        max_length: 512
        num_train_epochs: 1         # from here on: fields of the stage type's trainer config
        learning_rate: 1.0e-3       # (InfiMedSFTConfig for sft, InfiMedGRPOConfig for grpo)
        assistant_only_loss: false

Precision and kernels, per stage:

        dtype: bfloat16             # weights: float32 (default; `bf16: true` autocasts on CUDA), bfloat16, float16, auto
        attn_implementation: flash_attention_2  # sdpa (default), eager, flex_attention, flash_attention_2/3
        gradient_checkpointing: true            # trainer config fields, passed through as written:
        torch_compile: true                     #   compile the model (TrainingArguments)
        use_liger_kernel: true                  #   Liger's fused kernels (needs `liger-kernel` installed)

A kernel that is not installed fails when the recipe loads, naming the stage. Packed rows carry `position_ids` and
no attention mask, so flash attention takes its varlen path and flex attention a block mask (docs/packing.md).

Streamed sources (docs/streaming.md): read as they train, packed from a buffer, resumed exactly:

        datasets: [{path: data/shards, streaming: true, weight: 5}, {hub_id: org/vqa, streaming: true, weight: 1}]
        max_steps: 20000            # required: a stream has no length
        packing_buffer_size: 1000   # samples buffered for best fit

A stage is one mapping: the `StageSpec` keys (data, model and hand-over) and the fields of its type's trainer config,
over the defaults of `infimed.training.stages.STAGE_TRAINER_DEFAULTS`. Every stage is validated when the recipe is
loaded: an unknown key or a value of the wrong type fails there, naming the stage and the key.

Every stage writes a full `save_pretrained` checkpoint (with processor) to `OUTPUT/<stage name>`, which the next
stage loads; `OUTPUT/recipe_summary.json` holds one summary per stage. String values may use `${VAR}` or
`${VAR:-default}` to read environment variables (e.g. a data path).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infimed.core.config import ConfigError, config_from_dict, load_yaml
from infimed.core.parameter_groups import MODULE_GROUPS
from infimed.core.composition import init_checkpoint
from infimed.modeling.presets import PRESETS

from .distributed import is_main_process, main_process_first, wait_for_everyone
from .grpo_stage import GRPO_STAGE
from .sft_stage import SFT_STAGE
from .stages import StageType, attention_problem, run_stage, trainer_config

__all__ = ["STAGE_TYPES", "DatasetSpec", "LoraSpec", "StageSpec", "Recipe", "load_recipe", "recipe_from_dict",
           "run_recipe"]

logger = logging.getLogger(__name__)

# A stage's `type:` -> what that type adds to the one stage runner (`infimed.training.stages.run_stage`).
STAGE_TYPES: dict[str, StageType] = {"sft": SFT_STAGE, "grpo": GRPO_STAGE}
STAGE_DONE_FILE = "stage_summary.json"
_DTYPES = ("float32", "bfloat16", "float16", "auto")


@dataclass
class DatasetSpec:
    """One source of a stage's data mix (see `infimed.data.mixing.mix_sources`)."""

    path: str | None = field(default=None, metadata={"help": "Local `save_to_disk` folder or data file."})
    hub_id: str | None = field(default=None, metadata={"help": "Hub dataset id, loaded with `datasets.load_dataset`."})
    config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    split: str = field(default="train", metadata={"help": "Split to use."})
    weight: float | None = field(default=None, metadata={"help": "Share of the mix's rows (proportions)."})
    count: int | None = field(default=None, metadata={"help": "Exact number of samples to take."})
    token_weight: float | None = field(
        default=None, metadata={"help": "Share of the mix's tokens (text + images x visual tokens per image)."}
    )
    tokens: int | None = field(default=None, metadata={"help": "Tokens to take (rows are added until reached)."})
    allow_repeat: bool = field(
        default=False, metadata={"help": "Repeat rows when asked for more than the source holds (otherwise an error)."}
    )
    allow_shortfall: bool = field(
        default=False, metadata={"help": "Take every row when asked for more than the source holds (reported)."}
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Read the source as a stream (`datasets` IterableDataset), packed on the fly from a "
                          "buffer (`packing_buffer_size`); it has no length, so the stage sets `max_steps` "
                          "(docs/streaming.md)."},
    )
    name: str | None = field(default=None, metadata={"help": "Label in reports; defaults to the path or id."})
    where: dict[str, Any] | None = field(
        default=None,
        metadata={"help": "Keep rows whose column equals a value or is in a list, e.g. `{kind: [caption]}`."},
    )

    def __post_init__(self):
        if (self.path is None) == (self.hub_id is None):
            raise ValueError(f"A dataset entry needs exactly one of `path` or `hub_id`, got {self}.")
        amounts = [k for k in ("weight", "count", "token_weight", "tokens") if getattr(self, k) is not None]
        if len(amounts) > 1:
            raise ValueError(f"Dataset {self.label!r}: give one of `weight`, `count`, `token_weight` or `tokens`, "
                             f"not {' and '.join(f'`{k}`' for k in amounts)}.")
        if self.streaming and (self.count is not None or self.tokens is not None or self.token_weight is not None
                               or self.allow_repeat or self.allow_shortfall):
            raise ValueError(f"Dataset {self.label!r} streams (`streaming: true`): a stream has no length, so it can "
                             "only be mixed by `weight` (sampling probabilities); drop `count`, `tokens`, "
                             "`token_weight`, `allow_repeat` and `allow_shortfall`, or set `streaming: false`.")
        if self.allow_repeat and self.allow_shortfall:
            raise ValueError(f"Dataset {self.label!r}: `allow_repeat` and `allow_shortfall` exclude each other.")

    @property
    def label(self) -> str:
        return self.name or self.path or self.hub_id


@dataclass
class LoraSpec:
    """LoRA adapters (PEFT) on the language model; merged into the stage's saved checkpoint."""

    r: int = field(default=16, metadata={"help": "Adapter rank (16: PEFT's common default for 1-4B LLMs)."})
    alpha: int = field(default=32, metadata={"help": "Scaling numerator; alpha = 2r is the usual choice."})
    dropout: float = field(default=0.05, metadata={"help": "Adapter dropout."})
    target_modules: list[str] | str = field(
        default=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
        metadata={"help": "Modules that get adapters (regex or list); default: every LLM linear layer."},
    )


@dataclass
class StageSpec:
    """One training stage: its data and model keys; every other key of the stage is a field of its trainer config.

    `trainer` holds those trainer keys as written (`InfiMedSFTConfig` fields for `sft` stages, `InfiMedGRPOConfig`
    fields for `grpo` stages); `infimed.training.stages.trainer_config` builds the config from them. `max_length` and
    `push_to_hub` are the stage's own: the packed-row (SFT) or prompt + completion (GRPO) budget, and the repo the
    stage's checkpoint is uploaded to.
    """

    name: str = field(metadata={"help": "Stage name; its output goes to OUTPUT/<name>."})
    type: str = field(default="sft", metadata={"help": "Stage type: `sft` or `grpo`."})
    datasets: list[DatasetSpec] = field(default_factory=list, metadata={"help": "Sources of the stage's data mix."})
    eval_datasets: list[DatasetSpec] = field(default_factory=list, metadata={"help": "Optional held-out sources."})
    num_image_tokens: int | None = field(
        default=None, metadata={"help": "Visual tokens per image in this stage (saved with the stage's checkpoint)."}
    )
    min_pixels: int | None = field(
        default=None, metadata={"help": "Dynamic-resolution models (Qwen2.5-VL): fewest pixels an image is resized to."}
    )
    max_pixels: int | None = field(
        default=None, metadata={"help": "Dynamic-resolution models (Qwen2.5-VL): most pixels an image is resized to "
                                        "(bounds visual tokens per image: pixels / (14*14*4) for Qwen2.5-VL)."}
    )
    trainable: list[str] = field(
        default_factory=lambda: ["projector", "llm"],
        metadata={"help": "Module groups that train: vision, projector, llm (vision frozen unless listed)."},
    )
    max_length: int = field(default=2048, metadata={"help": "Tokens per packed row (SFT); prompt + completion (GRPO)."})
    lora: LoraSpec | None = field(default=None, metadata={"help": "LoRA block; full fine-tuning when absent."})
    push_to_hub: str | None = field(default=None, metadata={"help": "`ORG/NAME` to upload the stage output to."})
    dtype: str = field(
        default="float32",
        metadata={"help": "Precision the weights load in: float32 (with the trainer's `bf16` autocast on CUDA), "
                          "bfloat16 or float16 (pure low-precision weights), or auto (the checkpoint's own)."},
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "Attention kernel: sdpa (default), eager, flex_attention, flash_attention_2 or "
                          "flash_attention_3 (where installed). Packed rows use its per-sample path, with no mask."},
    )
    trainer: dict[str, Any] = field(
        default_factory=dict, init=False, metadata={"help": "The stage's trainer config keys, as written."}
    )

    def __post_init__(self):
        # Messages leave out the stage: `config_from_dict` prefixes them with `stage '<name>'`.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name or ""):
            raise ValueError(f"`name` {self.name!r} must be a plain folder name (letters, digits, `_.-`).")
        if self.type not in STAGE_TYPES:
            raise ValueError(f"unknown type {self.type!r}; choose from {sorted(STAGE_TYPES)}.")
        if not self.datasets:
            raise ValueError("no `datasets`: list the sources of the stage's data.")
        streamed = [d.label for d in self.datasets if d.streaming]
        if streamed and self.type != "sft":
            raise ValueError(f"dataset(s) {streamed} stream, but only `sft` stages read streams; drop `streaming`.")
        if streamed and len(streamed) < len(self.datasets):
            raise ValueError(f"dataset(s) {streamed} stream and the others do not; a stage's sources are mixed into "
                             "one stream, so set `streaming: true` on all of them or on none.")
        if any(d.streaming for d in self.eval_datasets):
            raise ValueError("`eval_datasets` cannot stream (evaluation packs its held-out rows once); drop "
                             "`streaming` there.")
        bad = sorted(set(self.trainable) - set(MODULE_GROUPS))
        if bad or not self.trainable:
            raise ValueError(f"`trainable` must list some of {list(MODULE_GROUPS)}, got {self.trainable}.")
        if self.num_image_tokens is not None and self.num_image_tokens < 1:
            raise ValueError(f"`num_image_tokens` must be positive, got {self.num_image_tokens}.")
        for key in ("min_pixels", "max_pixels"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"`{key}` must be positive, got {getattr(self, key)}.")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"`min_pixels` ({self.min_pixels}) is larger than `max_pixels` ({self.max_pixels}).")
        if self.dtype not in _DTYPES:
            raise ValueError(f"`dtype` must be one of {list(_DTYPES)}, got {self.dtype!r}.")
        if problem := attention_problem(self.attn_implementation):
            raise ValueError(problem)
        if self.push_to_hub is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", self.push_to_hub):
            raise ValueError(f"`push_to_hub` must look like `ORG/NAME`, got {self.push_to_hub!r}.")


@dataclass
class Recipe:
    """A whole pipeline: the starting model and its stages."""

    model: str = field(metadata={"help": "Preset name, or a checkpoint path / Hub id."})
    stages: list[StageSpec] = field(metadata={"help": "Stages, run in order."})
    output_dir: str = field(default="runs/infimed", metadata={"help": "Root of every stage's output."})
    seed: int = field(default=42, metadata={"help": "Seed of data mixing, packing and training."})
    vision_model: str | None = field(default=None, metadata={"help": "Pretrained vision encoder to compose."})
    language_model: str | None = field(default=None, metadata={"help": "Pretrained causal LM to compose."})
    # Off, as in transformers and TRL: a checkpoint's own Python code runs only when the recipe opts in. InfiMed
    # checkpoints do not need it (`import infimed` registers their classes in-process).
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run the model code a checkpoint ships (`auto_map`); only for authors you trust."},
    )

    def __post_init__(self):
        names = [s.name for s in self.stages]
        if not names:
            raise ValueError("A recipe needs at least one stage.")
        if len(set(names)) != len(names):
            raise ValueError(f"Stage names must be unique, got {names}.")


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STAGE_KEYS = frozenset(f.name for f in dataclasses.fields(StageSpec) if f.init)


def _expand(value):
    if isinstance(value, str):
        def sub(m):
            if m.group(1) in os.environ:
                return os.environ[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            raise ValueError(f"The recipe uses ${{{m.group(1)}}} but that environment variable is not set.")
        return _ENV.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def _stage_from_dict(raw, index: int) -> StageSpec:
    """A `StageSpec` from one stage mapping: its own keys typed, the rest checked to be trainer config fields."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"recipe.stages[{index}]: expected a mapping (one stage), got {raw!r:.80}.")
    where = f"stage {raw.get('name', index)!r}"
    stage_type = STAGE_TYPES.get(raw.get("type", "sft"))
    if stage_type is not None:  # an unknown type is reported by StageSpec, with the known ones
        config_keys = {f.name for f in dataclasses.fields(stage_type.config_class) if f.init}
        unknown = sorted(set(raw) - _STAGE_KEYS - config_keys, key=str)
        if unknown:
            hints = [m for key in unknown for m in difflib.get_close_matches(str(key), _STAGE_KEYS | config_keys, 1)]
            kind = raw.get("type", "sft")
            raise ConfigError(
                f"{where}: unknown key(s) {unknown}{f' (did you mean {hints}?)' if hints else ''}. A stage takes "
                f"{sorted(_STAGE_KEYS)} and the fields of {stage_type.config_class.__name__}; unknown `{kind}` keys "
                "are rejected so that a typo never silently falls back to a default."
            )
    stage = config_from_dict(StageSpec, {k: v for k, v in raw.items() if k in _STAGE_KEYS}, where)
    stage.trainer = {k: v for k, v in raw.items() if k not in _STAGE_KEYS}
    return stage


def recipe_from_dict(data: Mapping) -> Recipe:
    """A validated `Recipe`: every stage's keys and values, and its trainer config, are checked here."""
    data = _expand(dict(data))
    stages = data.get("stages")
    if not isinstance(stages, list):
        raise ConfigError(f"recipe.stages: expected a YAML list of stage mappings (`- name: ...`), got {stages!r:.80}.")
    data["stages"] = [_stage_from_dict(raw, i) for i, raw in enumerate(stages)]
    recipe = config_from_dict(Recipe, data, "recipe")
    for stage in recipe.stages:  # build each trainer config once now: its own checks run before any stage trains
        args = trainer_config(stage, recipe, STAGE_TYPES[stage.type], os.path.join(recipe.output_dir, stage.name))
        if stage.datasets[0].streaming and args.max_steps <= 0:
            raise ConfigError(f"stage {stage.name!r}: its sources stream, and a stream has no length to count epochs "
                              "in; set `max_steps` (optimizer steps; each takes `per_device_train_batch_size` x "
                              "`gradient_accumulation_steps` packed rows per process).")
        if stage.datasets[0].streaming and args.dataloader_num_workers > 0:
            raise ConfigError(f"stage {stage.name!r}: streamed sources are packed in the main process, so its "
                              f"position can be saved; set `dataloader_num_workers: 0` (got "
                              f"{args.dataloader_num_workers}).")
    return recipe


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Parse and validate a recipe YAML file."""
    try:
        return recipe_from_dict(load_yaml(path))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"Invalid recipe {path}: {err}") from err


def _initial_model(recipe: Recipe, output_dir: str) -> str:
    """The checkpoint the first stage starts from: `recipe.model` itself, or a preset initialised into OUTPUT/init.

    Under a multi-process launch the main process initialises it; the others wait, then find it written.
    """
    if recipe.model not in PRESETS:
        return recipe.model
    init_dir = os.path.join(output_dir, "init")
    with main_process_first():
        if not os.path.exists(os.path.join(init_dir, "config.json")):
            logger.info("Initialising preset %s into %s", recipe.model, init_dir)
            init_checkpoint(recipe.model, init_dir, vision_model=recipe.vision_model,
                            language_model=recipe.language_model, seed=recipe.seed)
    return init_dir


def run_recipe(recipe: Recipe, *, output_dir: str | None = None, stage: str | None = None, resume: bool = False,
               after_stage: Callable[[StageSpec, dict], dict] | None = None) -> dict:
    """Run the recipe's stages in order (or only `stage`); write and return `OUTPUT/recipe_summary.json`.

    `after_stage(spec, summary)`, called when a stage has trained and saved, returns entries to add to its summary
    (`infimed train` uploads the stages that set `push_to_hub` there).

    Under a multi-process launch (accelerate, torchrun) every process runs this; the main process alone writes the
    summaries and calls `after_stage`, and all processes meet at a barrier after each stage before the next one
    loads its output (`infimed.training.distributed`).
    """
    output_dir = output_dir or recipe.output_dir
    main = is_main_process()
    if main:
        os.makedirs(output_dir, exist_ok=True)
    names = [s.name for s in recipe.stages]
    if stage is not None and stage not in names:
        raise ValueError(f"No stage named {stage!r} in the recipe; stages are {names}.")
    summary_path = Path(output_dir) / "recipe_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.update({"model": recipe.model, "output_dir": output_dir, "seed": recipe.seed})
    summary.setdefault("stages", {})

    previous = None  # None: the recipe's starting model, materialised only if a stage needs it
    for spec in recipe.stages:
        stage_dir = os.path.join(output_dir, spec.name)
        done_file = os.path.join(stage_dir, STAGE_DONE_FILE)
        if (stage is not None and spec.name != stage) or (resume and os.path.exists(done_file)):
            if spec.name == stage or stage is None:
                logger.info("Stage %s already finished (%s); skipping.", spec.name, done_file)
                summary["stages"][spec.name] = json.loads(Path(done_file).read_text())
            previous = stage_dir
            continue
        if previous is None:
            previous = _initial_model(recipe, output_dir)
        elif not os.path.exists(os.path.join(previous, "config.json")):
            raise ValueError(f"Stage {spec.name!r} starts from {previous}, which does not exist yet: run the earlier "
                             "stages first (without `--stage`), or all of them with `--resume`.")
        logger.info("Stage %s (%s) from %s -> %s", spec.name, spec.type, previous, stage_dir)
        start = time.time()
        result = run_stage(spec, recipe, STAGE_TYPES[spec.type], previous, stage_dir, resume)
        result = {"name": spec.name, "type": spec.type, "init_model": previous, "output_dir": stage_dir,
                  "wall_seconds": round(time.time() - start, 2), **result}
        if main:
            if after_stage is not None:
                result.update(after_stage(spec, result))
            Path(done_file).write_text(json.dumps(result, indent=2, default=str))
            summary["stages"][spec.name] = result
            summary_path.write_text(json.dumps(summary, indent=2, default=str))
        else:
            summary["stages"][spec.name] = result
        wait_for_everyone()  # the stage's output and summary are written before any process moves on
        previous = stage_dir
    if main:
        summary_path.write_text(json.dumps(summary, indent=2, default=str))
    return summary
