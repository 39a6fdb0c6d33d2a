"""Facts a model card states, read from files only: the checkpoint, the recipe that trained it, its evaluation.

Nothing here imports torch or loads weights: parameter counts come from the safetensors headers, so a card for a
4B checkpoint renders in milliseconds. Every function returns plain dicts/lists the Jinja templates print as-is.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import safe_open

from infimed.core.parameter_groups import MODULE_GROUPS, module_group

__all__ = [
    "checkpoint_facts",
    "eval_facts",
    "format_count",
    "is_hub_id",
    "load_recipe_summary",
    "recipe_facts",
]

# Card rows of the parameter groups (`infimed.core.parameter_groups`), in card order; the LM head gets its own row
# (its weights are saved only when untied from the input embeddings).
CARD_GROUPS = {"vision": "vision encoder", "projector": "projector", "llm": "language model"}
LM_HEAD_ROW, LM_HEAD_PREFIX = "LM head (untied)", "lm_head."
# Below this many parameters a checkpoint is a test/demo model, and the card says its outputs mean nothing.
TOY_MODEL_MAX_PARAMETERS = 50_000_000


def is_hub_id(value) -> bool:
    """A `namespace/name` Hub id by the Hub's own grammar; a string that is also an existing local path is a path."""
    if not isinstance(value, str) or value.count("/") != 1:
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return not Path(value).exists()


def format_count(n: int) -> str:
    """1234 -> '1.2K', 2_160_000_000 -> '2.16B' (three significant digits)."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    # `get_slice` reads the header only: no tensor data is loaded.
    with safe_open(str(path), framework="numpy") as handle:
        return {name: handle.get_slice(name).get_shape() for name in handle.keys()}


def _parameter_counts(model_dir: Path) -> dict[str, int]:
    index = model_dir / "model.safetensors.index.json"
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else (
        ["model.safetensors"] if (model_dir / "model.safetensors").is_file() else [])
    counts = {**{row: 0 for row in CARD_GROUPS.values()}, LM_HEAD_ROW: 0, "other": 0}
    total = 0
    for shard in shards:
        for name, shape in _safetensors_shapes(model_dir / shard).items():
            n = math.prod(shape)
            total += n
            row = LM_HEAD_ROW if name.startswith(LM_HEAD_PREFIX) else CARD_GROUPS.get(module_group(name), "other")
            counts[row] += n
    counts["total"] = total
    return counts


def _describe(parts: list[tuple[str, object]]) -> str:
    """'`siglip_vision_model`, 2 layers, ...' from (format, value) pairs, leaving out values the config lacks."""
    return ", ".join(fmt.format(value) for fmt, value in parts if value not in (None, "", [])) or "not recorded"


def checkpoint_facts(model_dir: str | Path) -> dict:
    """Architecture, visual tokens, parameter counts and backbone ids of a `save_pretrained` folder.

    Written for InfiMed checkpoints (vision_config + text_config + num_image_tokens); for other VLM configs (e.g.
    Qwen2.5-VL, with dynamic resolution) fields the config lacks are left out rather than guessed.
    """
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{model_dir} has no config.json; pass a folder written by `save_pretrained`.")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    vision, text = config.get("vision_config") or {}, config.get("text_config") or config
    image_size, patch_size = vision.get("image_size"), vision.get("patch_size")
    grid = image_size // patch_size if isinstance(image_size, int) and isinstance(patch_size, int) else None
    counts = _parameter_counts(model_dir)
    num_image_tokens = config.get("num_image_tokens")
    side = math.isqrt(num_image_tokens) if isinstance(num_image_tokens, int) and num_image_tokens > 0 else None
    backbones = [v.get("_name_or_path") for v in (vision, text)]
    parameters = {name: n for name, n in counts.items() if n or name == "total"}
    return {
        "model_type": config.get("model_type", "unknown"),
        "architecture": (config.get("architectures") or ["unknown"])[0],
        "remote_code": bool(config.get("auto_map")),
        "dtype": config.get("dtype") or config.get("torch_dtype") or "float32",
        "vision_type": vision.get("model_type") or "vision encoder",
        "text_type": text.get("model_type") or "language model",
        "vision_summary": _describe([
            ("`{}`", vision.get("model_type")), ("{} layers", vision.get("num_hidden_layers", vision.get("depth"))),
            ("hidden size {}", vision.get("hidden_size")), ("{} px input", image_size), ("patch {}", patch_size),
            ("{} patches", f"{grid}x{grid} = {grid * grid}" if grid else None),
        ]),
        "text_summary": _describe([
            ("`{}`", text.get("model_type")), ("{} layers", text.get("num_hidden_layers")),
            ("hidden size {}", text.get("hidden_size")), ("vocabulary {}", text.get("vocab_size")),
            ("context {} tokens", text.get("max_position_embeddings")),
        ]),
        "image_size": image_size,
        "num_patches": grid * grid if grid else None,
        "num_image_tokens": num_image_tokens,
        "pooled_grid": f"{side}x{side}" if side else None,
        "tie_word_embeddings": bool(config.get("tie_word_embeddings")),
        "parameters": parameters,
        "parameters_human": {name: format_count(n) for name, n in parameters.items()},
        "is_toy": 0 < counts["total"] < TOY_MODEL_MAX_PARAMETERS,
        "backbone_ids": [b for b in backbones if is_hub_id(b)],
    }


def load_recipe_summary(path: str | Path | None) -> dict[str, dict]:
    """`recipe_summary.json` as {stage name: summary}; accepts a list of stages or a mapping, wrapped or not."""
    if path is None or not Path(path).is_file():
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict) and "stages" in data:
        data = data["stages"]
    if isinstance(data, list):
        return {str(s.get("name", s.get("stage", i))): s for i, s in enumerate(data) if isinstance(s, dict)}
    if isinstance(data, dict):
        return {str(k): v for k, v in data.items() if isinstance(v, dict)}
    raise ValueError(f"{path} is neither a list of stage summaries nor a mapping from stage name to summary.")


def _dataset_label(entry: dict) -> str:
    source = entry.get("hub_id") or entry.get("path") or entry.get("name") or "unnamed"
    split = f" ({entry['split']})" if entry.get("split") else ""
    if entry.get("count") is not None:
        amount = f"{entry['count']} samples"
    elif entry.get("weight") is not None:
        amount = f"weight {entry['weight']}"
    else:
        amount = "all"
    return f"{Path(source).name if not is_hub_id(source) else source}{split}: {amount}"


# Names the stage runners use for the same figure (first found wins).
RUN_KEYS = {
    "steps": ("steps", "global_step", "max_steps"),
    "seconds": ("seconds", "train_runtime", "runtime_seconds"),
    "final_loss": ("final_loss", "train_loss", "loss"),
    "final_reward": ("final_reward", "reward", "mean_reward"),
    "packing_efficiency": ("packing_efficiency",),
}


def _run_facts(run: dict) -> dict:
    out = {}
    for key, names in RUN_KEYS.items():
        value = next((run[n] for n in names if isinstance(run.get(n), (int, float))), None)
        if value is not None:
            out[key] = round(value, 4) if isinstance(value, float) else value
    return out


def recipe_facts(recipe_path: str | Path, summary: dict[str, dict] | None = None, *,
                 up_to_stage: str | None = None) -> dict:
    """Stages of a training recipe YAML (data mix, visual tokens, trainable modules), joined with run summaries.

    With `up_to_stage` naming one of the stages (a stage's checkpoint is `OUTPUT/<stage name>`), later stages are
    left out: they did not shape that checkpoint.
    """
    recipe_path = Path(recipe_path)
    try:
        recipe = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"Cannot read the recipe {recipe_path}: {err}") from err
    if not isinstance(recipe, dict) or not isinstance(recipe.get("stages"), list) or not recipe["stages"]:
        raise ValueError(f"{recipe_path} is not a training recipe: it needs a non-empty `stages:` list.")
    summary = summary or {}
    stages = []
    for i, stage in enumerate(recipe["stages"]):
        if not isinstance(stage, dict):
            raise ValueError(f"{recipe_path}: stage {i} is a {type(stage).__name__}, not a mapping.")
        name = str(stage.get("name", f"stage-{i}"))
        trainable = stage.get("trainable") or ["projector", "llm"]  # StageSpec's default in training/recipe.py
        run = summary.get(name, {})
        stages.append({
            "name": name,
            "type": stage.get("type", "sft"),
            "datasets": [_dataset_label(d) for d in stage.get("datasets") or [] if isinstance(d, dict)],
            "hub_datasets": [d.get("hub_id") for d in stage.get("datasets") or []
                             if isinstance(d, dict) and is_hub_id(d.get("hub_id"))],
            "num_image_tokens": stage.get("num_image_tokens", "checkpoint default"),
            "trainable": ", ".join(trainable),
            "frozen": ", ".join(m for m in MODULE_GROUPS if m not in trainable) or "none",
            "lora": bool(stage.get("lora")),
            "max_length": stage.get("max_length"),
            "length": (f"{stage['max_steps']} steps" if (stage.get("max_steps") or 0) > 0
                       else f"{stage.get('epochs', stage.get('num_train_epochs', 1))} epoch(s)"),
            "learning_rate": stage.get("learning_rate", stage.get("lr")),
            "run": _run_facts(run),
        })
    names = [stage["name"] for stage in stages]
    skipped = []
    if up_to_stage in names:
        cut = names.index(up_to_stage) + 1
        stages, skipped = stages[:cut], names[cut:]
    model = recipe.get("model")
    return {
        "path": recipe_path.name,
        "init": model if isinstance(model, str) else "unspecified",
        "base_model": model if is_hub_id(model) else None,
        "seed": recipe.get("seed"),
        "stages": stages,
        "stage_types": sorted({s["type"] for s in stages}),
        "hub_datasets": sorted({d for s in stages for d in s["hub_datasets"]}),
        "final_stage": stages[-1]["name"],
        "skipped_stages": skipped,
    }


def eval_facts(results_path: str | Path) -> dict:
    """Benchmark table, model-index entries and the evaluation settings from an `infimed eval` results.json."""
    results_path = Path(results_path)
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"Cannot read evaluation results {results_path}: {err}") from err
    if not isinstance(results, dict) or not isinstance(results.get("benchmarks"), dict):
        raise ValueError(f"{results_path} has no `benchmarks` mapping; pass the results.json written by "
                         "`infimed eval --output DIR`.")
    model_index = results.get("model_index") or []
    for entry in model_index:
        if not (isinstance(entry, dict) and entry.get("task", {}).get("type") and entry.get("dataset", {}).get("type")
                and isinstance(entry.get("metrics"), list)):
            raise ValueError(f"{results_path}: `model_index` entry {entry!r} needs task.type, dataset.type and a "
                             "metrics list (see the evaluation results contract).")
    rows = [
        {"benchmark": entry["dataset"].get("name", entry["dataset"]["type"]), "split": entry["dataset"].get("split"),
         "metric": metric.get("name") or metric["type"], "value": metric["value"]}
        for entry in model_index for metric in entry["metrics"]
    ]
    if not rows:  # results without a model_index still show their headline accuracy
        rows = [{"benchmark": bench, "split": None, "metric": "accuracy", "value": metrics["accuracy"]}
                for bench, metrics in results["benchmarks"].items()
                if isinstance(metrics, dict) and isinstance(metrics.get("accuracy"), (int, float))]
    kinds, counts = [], []
    for bench, metrics in results["benchmarks"].items():
        if not isinstance(metrics, dict):
            continue
        counts.append({"benchmark": bench, "num_items": metrics.get("num_items", "?"),
                       "unparsed": metrics.get("unparsed", "?")})
        for kind, group in (metrics.get("by_kind") or {}).items():
            if isinstance(group, dict) and isinstance(group.get("accuracy"), (int, float)):
                kinds.append({"benchmark": bench, "kind": kind, "num_items": group.get("num_items", "?"),
                              "accuracy": group["accuracy"], "chance": group.get("chance")})
    judge = results.get("judge")
    return {
        "path": results_path.name,
        "rows": rows,
        "kinds": kinds,
        "counts": counts,
        "model_index": model_index,
        "seed": results.get("seed"),
        "prompt": results.get("prompt") or {},
        "parser": results.get("parser") or {},
        "judge": (judge.get("model") or judge.get("kind") or "configured") if isinstance(judge, dict) else None,
        "model": results.get("model"),
        "versions": results.get("versions") or {},
    }
