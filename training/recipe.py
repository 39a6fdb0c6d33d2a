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
        type: sft                   # sft | grpo; dispatched through STAGE_RUNNERS
        datasets: [{path: demo-output/data, split: train, weight: 1.0}]
        num_image_tokens: 16        # low-to-high resolution: 16 here, 64 later
        trainable: [projector, llm] # vision stays frozen unless listed
        max_length: 512
        epochs: 1
        learning_rate: 1.0e-3
        sft: {assistant_only_loss: false}   # any InfiMedSFTConfig field

Every stage writes a full `save_pretrained` checkpoint (with processor) to `OUTPUT/<stage name>`, which the next
stage loads; `OUTPUT/recipe_summary.json` holds one summary per stage. String values may use `${VAR}` or
`${VAR:-default}` to read environment variables (e.g. a data path).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["STAGE_RUNNERS", "DatasetSpec", "LoraSpec", "StageSpec", "Recipe", "load_recipe", "run_recipe"]

logger = logging.getLogger(__name__)

# type -> "module:function"; each `run(stage, recipe, init_model, output_dir, resume) -> dict` (JSON-able summary)
STAGE_RUNNERS = {
    "sft": "infimed.training.sft_stage:run",
    "grpo": "infimed.training.grpo_stage:run",
}
STAGE_DONE_FILE = "stage_summary.json"


@dataclass
class DatasetSpec:
    """One source of a stage's data mix (see `infimed.data.mixing.mix_sources`)."""

    path: str | None = field(default=None, metadata={"help": "Local `save_to_disk` folder or data file."})
    hub_id: str | None = field(default=None, metadata={"help": "Hub dataset id, loaded with `datasets.load_dataset`."})
    config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    split: str = field(default="train", metadata={"help": "Split to use."})
    weight: float | None = field(default=None, metadata={"help": "Share of the mix (proportions across sources)."})
    count: int | None = field(default=None, metadata={"help": "Exact number of samples to take."})
    name: str | None = field(default=None, metadata={"help": "Label in reports; defaults to the path or id."})
    where: dict[str, Any] | None = field(
        default=None,
        metadata={"help": "Keep rows whose column equals a value or is in a list, e.g. `{kind: [caption]}`."},
    )

    def __post_init__(self):
        if (self.path is None) == (self.hub_id is None):
            raise ValueError(f"A dataset entry needs exactly one of `path` or `hub_id`, got {self}.")
        if self.weight is not None and self.count is not None:
            raise ValueError(f"Dataset {self.label!r}: give `weight` or `count`, not both.")

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
    """One training stage."""

    name: str = field(metadata={"help": "Stage name; its output goes to OUTPUT/<name>."})
    type: str = field(default="sft", metadata={"help": "Stage type: `sft` or `grpo`."})
    datasets: list[DatasetSpec] = field(default_factory=list, metadata={"help": "Sources of the stage's data mix."})
    eval_datasets: list[DatasetSpec] = field(default_factory=list, metadata={"help": "Optional held-out sources."})
    num_image_tokens: int | None = field(
        default=None, metadata={"help": "Visual tokens per image in this stage (saved with the stage's checkpoint)."}
    )
    trainable: list[str] = field(
        default_factory=lambda: ["projector", "llm"],
        metadata={"help": "Module groups that train: vision, projector, llm (vision frozen unless listed)."},
    )
    max_length: int = field(default=2048, metadata={"help": "Tokens per packed row."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the stage's data."})
    max_steps: int = field(default=-1, metadata={"help": "Optimiser steps; overrides `epochs` when > 0."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate (2e-5: common full-SFT value)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_ratio: float = field(default=0.03, metadata={"help": "Share of steps of linear warm-up (LLaVA-style)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name."})
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Packed rows per device and step."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimiser step."})
    lora: LoraSpec | None = field(default=None, metadata={"help": "LoRA block; full fine-tuning when absent."})
    push_to_hub: str | None = field(default=None, metadata={"help": "`ORG/NAME` to upload the stage output to."})
    sft: dict[str, Any] = field(default_factory=dict, metadata={"help": "Extra InfiMedSFTConfig fields."})
    grpo: dict[str, Any] = field(default_factory=dict, metadata={"help": "Extra InfiMedGRPOConfig fields."})

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name or ""):
            raise ValueError(f"Stage name {self.name!r} must be a plain folder name (letters, digits, `_.-`).")
        if self.type not in STAGE_RUNNERS:
            raise ValueError(f"Stage {self.name!r}: unknown type {self.type!r}; choose from {sorted(STAGE_RUNNERS)}.")
        if not self.datasets:
            raise ValueError(f"Stage {self.name!r} has no `datasets`.")
        from .modules import MODULE_GROUPS

        bad = sorted(set(self.trainable) - set(MODULE_GROUPS))
        if bad or not self.trainable:
            raise ValueError(f"Stage {self.name!r}: `trainable` must list some of {list(MODULE_GROUPS)}, got "
                             f"{self.trainable}.")
        if self.num_image_tokens is not None and self.num_image_tokens < 1:
            raise ValueError(f"Stage {self.name!r}: `num_image_tokens` must be positive, got {self.num_image_tokens}.")
        if self.push_to_hub is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", self.push_to_hub):
            raise ValueError(f"Stage {self.name!r}: `push_to_hub` must look like `ORG/NAME`, got {self.push_to_hub!r}.")
        other = "grpo" if self.type == "sft" else "sft"
        if getattr(self, other):
            raise ValueError(f"Stage {self.name!r} is of type {self.type!r} but has a `{other}` block.")


@dataclass
class Recipe:
    """A whole pipeline: the starting model and its stages."""

    model: str = field(metadata={"help": "Preset name, or a checkpoint path / Hub id."})
    stages: list[StageSpec] = field(metadata={"help": "Stages, run in order."})
    output_dir: str = field(default="runs/infimed", metadata={"help": "Root of every stage's output."})
    seed: int = field(default=42, metadata={"help": "Seed of data mixing, packing and training."})
    vision_model: str | None = field(default=None, metadata={"help": "Pretrained vision encoder to compose."})
    language_model: str | None = field(default=None, metadata={"help": "Pretrained causal LM to compose."})
    trust_remote_code: bool = field(default=True, metadata={"help": "Load checkpoints that ship their code."})

    def __post_init__(self):
        names = [s.name for s in self.stages]
        if not names:
            raise ValueError("A recipe needs at least one stage.")
        if len(set(names)) != len(names):
            raise ValueError(f"Stage names must be unique, got {names}.")


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}: {data!r}.")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}. Allowed: {sorted(known)}.")
    return cls(**data)


def recipe_from_dict(data: dict) -> Recipe:
    data = _expand(dict(data))
    stages = []
    for i, raw in enumerate(data.pop("stages", None) or []):
        raw = dict(raw)
        where = f"stage {raw.get('name', i)!r}"
        for key in ("datasets", "eval_datasets"):
            raw[key] = [_build(DatasetSpec, d, f"{where} {key}[{j}]") for j, d in enumerate(raw.get(key) or [])]
        if raw.get("lora") is not None:
            raw["lora"] = _build(LoraSpec, raw["lora"], f"{where} lora")
        for key in ("learning_rate", "weight_decay", "warmup_ratio", "epochs"):
            if isinstance(raw.get(key), str):  # YAML reads "1e-3" (no dot) as a string
                raw[key] = float(raw[key])
        stages.append(_build(StageSpec, raw, where))
    data["stages"] = stages
    return _build(Recipe, data, "recipe")


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Parse and validate a recipe YAML file."""
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    try:
        return recipe_from_dict(data or {})
    except (TypeError, ValueError) as err:
        raise ValueError(f"Invalid recipe {path}: {err}") from err


def _runner(stage_type: str):
    module_name, func = STAGE_RUNNERS[stage_type].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"Stage type {stage_type!r} needs `{module_name}`, which cannot be imported: {err}") from err
    return getattr(module, func)


def _initial_model(recipe: Recipe, output_dir: str) -> str:
    """The checkpoint the first stage starts from: `recipe.model` itself, or a preset initialised into OUTPUT/init."""
    from infimed.modeling.presets import PRESETS

    if recipe.model not in PRESETS:
        return recipe.model
    init_dir = os.path.join(output_dir, "init")
    if not os.path.exists(os.path.join(init_dir, "config.json")):
        from infimed.modeling.composition import init_checkpoint

        logger.info("Initialising preset %s into %s", recipe.model, init_dir)
        init_checkpoint(recipe.model, init_dir, vision_model=recipe.vision_model,
                        language_model=recipe.language_model, seed=recipe.seed)
    return init_dir


def run_recipe(recipe: Recipe, *, output_dir: str | None = None, stage: str | None = None,
               resume: bool = False) -> dict:
    """Run the recipe's stages in order (or only `stage`); write and return `OUTPUT/recipe_summary.json`."""
    output_dir = output_dir or recipe.output_dir
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
        result = _runner(spec.type)(spec, recipe, previous, stage_dir, resume)
        result = {"name": spec.name, "type": spec.type, "init_model": previous, "output_dir": stage_dir,
                  "wall_seconds": round(time.time() - start, 2), **result}
        Path(done_file).write_text(json.dumps(result, indent=2, default=str))
        summary["stages"][spec.name] = result
        summary_path.write_text(json.dumps(summary, indent=2, default=str))
        previous = stage_dir
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    return summary
