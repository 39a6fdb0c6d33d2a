"""Pre-push checks: would this folder load for someone who has only transformers and `trust_remote_code=True`?

A checkpoint on the Hub is used as `AutoModelForImageTextToText.from_pretrained("org/name", trust_remote_code=True)`
plus `AutoProcessor.from_pretrained(...)` by people who never installed InfiMed. These checks read the folder (JSON,
safetensors headers, the Python sources' imports) without importing or loading anything, and return one sentence per
problem, each saying what is missing and how to fix it. An empty list means the folder is fit to push.

    from infimed.hub import check_model_folder
    for problem in check_model_folder("runs/demo/sft-3"):
        print(problem)
"""

from __future__ import annotations

import ast
import json
from fnmatch import fnmatch
from pathlib import Path

from safetensors import SafetensorError, safe_open

__all__ = [
    "DATASET_FILE_PATTERNS",
    "MODEL_FILE_PATTERNS",
    "check_dataset_folder",
    "check_model_folder",
    "select_files",
]

# What a model repo needs to load and to be understood; everything else in a training output folder (optimizer
# states, trainer logs, checkpoints-N/) stays local. Patterns match paths relative to the folder.
MODEL_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "*.py",
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "additional_chat_templates/*.jinja",
    "README.md",
    "LICENSE",
)
# A curated dataset folder (`infimed curate --output DIR`): parquet shards, its card and its reports.
DATASET_FILE_PATTERNS = ("*.parquet", "*/*.parquet", "*/*/*.parquet", "README.md", "*.json", "LICENSE")

# Pickled weights (run arbitrary code on load). Other pickles of a training folder (optimizer.pt, rng_state.pth,
# training_args.bin) are not weights and are simply not uploaded.
PICKLE_WEIGHT_PATTERNS = ("pytorch_model*.bin", "model*.bin", "model*.pt", "model*.pth", "*.ckpt", "consolidated*.pth")
TOKENIZER_VOCAB_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("tokenizer.model",))
# Auto classes a checkpoint of this package must map: TRL and `pipeline("image-text-to-text")` resolve the model
# class through AutoModelForImageTextToText.
REQUIRED_AUTO_MAP = ("AutoConfig", "AutoModelForImageTextToText")
PROCESSOR_CONFIG_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json", "config.json")


def select_files(folder: str | Path, patterns: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Split the files under `folder` into (selected, skipped) relative POSIX paths; hidden paths are ignored."""
    folder = Path(folder)
    selected, skipped = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue  # .cache/huggingface (pull metadata), .git, editor files
        (selected if any(fnmatch(rel, pat) and rel.count("/") == pat.count("/") for pat in patterns)
         else skipped).append(rel)
    return selected, skipped


def _read_json(path: Path, problems: list[str]) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problems.append(f"{path.name} cannot be read as JSON ({err}); re-save the checkpoint with `save_pretrained`.")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} holds a {type(data).__name__}, not a JSON object; re-save the checkpoint.")
        return None
    return data


def _auto_map_modules(auto_map: dict) -> dict[str, str]:
    """{auto class: module name} for entries defined in this folder (`module.Class`, not `other/repo--module.Class`)."""
    modules = {}
    for auto_class, refs in auto_map.items():
        for ref in refs if isinstance(refs, (list, tuple)) else [refs]:
            if isinstance(ref, str) and "--" not in ref and "." in ref:
                modules[auto_class] = ref.rsplit(".", 1)[0]
    return modules


def _check_code(folder: Path, modules: set[str], problems: list[str]) -> None:
    """Every module named by an auto_map exists, parses, and imports only relative siblings that exist."""
    seen, todo = set(), sorted(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = folder / f"{module.replace('.', '/')}.py"
        if not path.is_file():
            problems.append(
                f"code file {path.name} (named in an `auto_map` or imported by another code file) is missing; "
                "save the model after `import infimed` so `save_pretrained` copies the code files next to the weights."
            )
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError) as err:
            problems.append(f"code file {path.name} does not parse ({err}); it must be valid Python source.")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                # `from .x import y` needs x.py; `from . import x` needs x.py
                todo.extend([node.module] if node.module else [alias.name for alias in node.names])
                continue
            if isinstance(node, ast.ImportFrom):
                absolute = [node.module or ""]
            elif isinstance(node, ast.Import):
                absolute = [alias.name for alias in node.names]
            else:
                continue
            if any(name == "infimed" or name.startswith("infimed.") for name in absolute):
                problems.append(
                    f"code file {path.name} imports `infimed` (line {node.lineno}), which people loading the model "
                    "with `trust_remote_code=True` do not have; remote code must import its siblings relatively."
                )


def _readable_safetensors(path: Path) -> bool:
    """The safetensors library parses the header and checks every tensor's byte range against the file size, without
    reading tensor data."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            handle.keys()
    except (OSError, SafetensorError):
        return False
    return True


def _check_weights(folder: Path, problems: list[str]) -> None:
    pickles = sorted(p.name for p in folder.iterdir()
                     if p.is_file() and any(fnmatch(p.name, pat) for pat in PICKLE_WEIGHT_PATTERNS))
    if pickles:
        problems.append(
            f"pickle weights {pickles} found: pickles run arbitrary code when loaded and the Hub flags them; save "
            "weights as safetensors (`save_pretrained` does by default) and remove the pickle files from the folder."
        )
    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file():
        index = _read_json(index_path, problems)
        weight_map = (index or {}).get("weight_map")
        if index is not None and not isinstance(weight_map, dict):
            problems.append("model.safetensors.index.json has no `weight_map`; re-save the checkpoint.")
            return
        shards = sorted(set((weight_map or {}).values()))
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        problems.append(
            "no weights: neither model.safetensors nor model.safetensors.index.json is in the folder; save the "
            "model with `model.save_pretrained(folder)`."
        )
        return
    for shard in shards:
        if not (folder / shard).is_file():
            problems.append(f"weight shard {shard} listed in model.safetensors.index.json is missing.")
        elif not _readable_safetensors(folder / shard):
            problems.append(f"weight file {shard} is not a readable safetensors file (bad or truncated header).")


def _is_custom(config: dict) -> bool:
    """A model type transformers does not know itself (e.g. `infimed`) loads only through `auto_map` + code files;
    a native one (e.g. `qwen2_5_vl` for InfiMed-SFT/RL-3B) needs neither."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return bool(config.get("model_type")) and config["model_type"] not in CONFIG_MAPPING_NAMES


def _check_processor(folder: Path, config: dict, problems: list[str]) -> None:
    if not (folder / "tokenizer_config.json").is_file():
        problems.append("no tokenizer: tokenizer_config.json is missing; save the processor with "
                        "`processor.save_pretrained(folder)`.")
    elif not any(all((folder / name).is_file() for name in group) for group in TOKENIZER_VOCAB_FILES):
        problems.append("no tokenizer vocabulary: none of tokenizer.json, vocab.json + merges.txt, tokenizer.model "
                        "is in the folder; save the processor with `processor.save_pretrained(folder)`.")
    if not any((folder / name).is_file() for name in ("processor_config.json", "preprocessor_config.json")):
        problems.append("no processor config: neither processor_config.json nor preprocessor_config.json is in the "
                        "folder, so `AutoProcessor` cannot build the image processor; save the processor with "
                        "`processor.save_pretrained(folder)`.")
    processor_modules: set[str] = set()
    chat_template = any((folder / name).is_file() for name in ("chat_template.jinja", "chat_template.json"))
    for name in PROCESSOR_CONFIG_FILES:
        # config.json was read (and its errors reported) by the caller
        data = _read_json(folder / name, [] if name == "config.json" else problems) if (folder / name).is_file() \
            else None
        if data is None:
            continue
        chat_template = chat_template or bool(data.get("chat_template"))
        for sub in [data, *(v for v in data.values() if isinstance(v, dict))]:  # v5 nests image_processor
            auto_map = sub.get("auto_map")
            if isinstance(auto_map, dict):
                processor_modules |= {m for c, m in _auto_map_modules(auto_map).items() if c != "AutoConfig"
                                      and not c.startswith("AutoModel")}
    if not chat_template:
        problems.append("no chat template (chat_template.jinja, or `chat_template` in processor/tokenizer config): "
                        "`apply_chat_template` would fail; set `processor.chat_template` and save the processor.")
    if _is_custom(config) and not processor_modules:
        problems.append(
            f"no `auto_map` entry for AutoProcessor in {', '.join(PROCESSOR_CONFIG_FILES)}: transformers does not "
            f"know model_type {config.get('model_type')!r}, so `AutoProcessor.from_pretrained(..., "
            "trust_remote_code=True)` cannot find the processor class; save the processor after `import infimed`."
        )
    _check_code(folder, processor_modules, problems)


def check_model_folder(folder: str | Path) -> list[str]:
    """Problems that would stop `folder` from loading with transformers alone and `trust_remote_code=True`."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a directory; pass the folder written by `save_pretrained`."]
    problems: list[str] = []
    config = _read_json(folder / "config.json", problems) if (folder / "config.json").is_file() else None
    if config is None:
        if not problems:
            problems.append("config.json is missing; save the model with `model.save_pretrained(folder)`.")
        config = {}
    elif not config.get("model_type"):
        problems.append("config.json has no `model_type`; save the model with `model.save_pretrained(folder)`.")
    auto_map = config.get("auto_map") if isinstance(config.get("auto_map"), dict) else {}
    if _is_custom(config) and not auto_map:
        problems.append(
            "config.json has no `auto_map`, so `trust_remote_code=True` cannot find the InfiMed classes; save the "
            "model after `import infimed` (which registers the classes for remote code) with `save_pretrained`."
        )
    elif _is_custom(config) and any(name not in auto_map for name in REQUIRED_AUTO_MAP):
        missing = [name for name in REQUIRED_AUTO_MAP if name not in auto_map]
        problems.append(f"config.json `auto_map` lacks {missing}; `AutoModelForImageTextToText` and TRL need them. "
                        "Save the model after `import infimed` with `save_pretrained`.")
    _check_code(folder, set(_auto_map_modules(auto_map).values()), problems)  # shipped code must load, always
    _check_weights(folder, problems)
    _check_processor(folder, config, problems)
    readme = folder / "README.md"
    if readme.is_file():
        problems.extend(_check_card(readme, "model"))
    return list(dict.fromkeys(problems))  # a code file reached from both model and processor is reported once


def _check_card(readme: Path, repo_type: str) -> list[str]:
    from huggingface_hub import DatasetCard, ModelCard

    card_class = ModelCard if repo_type == "model" else DatasetCard
    try:
        card_class(readme.read_text(encoding="utf-8"))
    except Exception as err:  # the card classes raise ValueError or yaml errors on bad metadata
        return [f"README.md has invalid metadata ({err}); regenerate it with `infimed card` or fix its YAML header."]
    return []


def check_dataset_folder(folder: str | Path) -> list[str]:
    """Problems that would stop `folder` from being a loadable, documented dataset repo (parquet shards + card)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a directory; pass the folder written by `infimed curate --output DIR`."]
    problems: list[str] = []
    if (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file():
        problems.append("this is a `save_to_disk` folder (Arrow files + state.json), which the Hub cannot serve; "
                        "write parquet shards (`infimed curate` does, or `dataset.to_parquet(...)`).")
    selected, _ = select_files(folder, DATASET_FILE_PATTERNS)
    shards = [rel for rel in selected if rel.endswith(".parquet")]
    if not shards:
        problems.append(f"no parquet shards under {folder}; write the dataset with `infimed curate --output DIR`.")
    import pyarrow.parquet as pq

    rows: dict[str, int] = {}
    for rel in shards:
        try:
            rows[rel] = pq.read_metadata(folder / rel).num_rows
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError on corrupt footers
            problems.append(f"parquet shard {rel} cannot be read ({err}); rewrite it.")
    if (folder / "curation_report.json").is_file() and len(rows) == len(shards):
        problems.extend(_check_curation_report(folder / "curation_report.json", rows))
    readme = folder / "README.md"
    if not readme.is_file():
        problems.append("README.md (the dataset card) is missing; `infimed curate` writes one, or render it with "
                        "`infimed.model_cards.dataset_card`.")
    else:
        problems.extend(_check_card(readme, "dataset"))
    return problems


def _check_curation_report(path: Path, rows: dict[str, int]) -> list[str]:
    """The shards must be those `curation_report.json` lists, with as many rows as it says were kept: otherwise the
    shards and the report (and the card rendered from it) come from different runs, or a run was cut short."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        listed, kept = sorted(report["output"]["shards"]), int(report["kept"])
    except (ValueError, KeyError, TypeError) as err:
        return [f"{path.name} does not parse ({err}); rerun `infimed curate` into a new folder."]
    fix = "the folder mixes two curation runs or one was cut short; rerun `infimed curate --overwrite` into it."
    problems = []
    if listed != sorted(rows):
        problems.append(f"{path.name} lists shards {listed} but the folder has {sorted(rows)}: {fix}")
    elif sum(rows.values()) != kept:
        problems.append(f"the shards hold {sum(rows.values())} rows but {path.name} says {kept} were kept: {fix}")
    return problems
