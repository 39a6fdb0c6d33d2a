"""`infimed eval`: MedEvalKit-compatible medical benchmarks with correct scoring and batched generation.

    infimed eval --model runs/tiny --benchmarks demo --data-dir demo-output/data --output runs/tiny/eval
    infimed eval --model OpenGVLab/... --benchmarks infimed --data-dir /data/medbench --output eval/ --batch-size 16
    infimed eval --predictions other_system.jsonl --benchmarks vqa_rad --data-dir /data/medbench --output eval/
    infimed eval eval.yaml --limit 50          # EvalConfig fields in YAML; flags override them

Writes `results.json` (with model-index entries for model cards), `results.md`, `results.png`, and per benchmark
`predictions.jsonl` + `metrics.json`. A rerun with the same output folder resumes from the per-item cache.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "main"]


# CLI flag -> (section, EvalConfig / GenerationOptions field); section None is the top level.
_FLAGS = {
    "model": (None, "model"), "benchmarks": (None, "benchmarks"), "data_dir": (None, "data_dir"),
    "output": (None, "output_dir"), "predictions": (None, "predictions"), "limit": (None, "limit"),
    "seed": (None, "seed"), "system_prompt": (None, "system_prompt"), "reasoning": (None, "reasoning"),
    "medevalkit_compat": (None, "medevalkit_compat"), "judge_base_url": (None, "judge_base_url"),
    "judge_model": (None, "judge_model"), "judge_api_key_env": (None, "judge_api_key_env"), "device": (None, "device"),
    "batch_size": ("generation", "batch_size"), "max_new_tokens": ("generation", "max_new_tokens"),
    "num_image_tokens": ("generation", "num_image_tokens"), "max_images": ("generation", "max_images"),
    "max_image_side": ("generation", "max_image_side"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults live in EvalConfig / GenerationOptions (one place); a flag left unset keeps the YAML or default value.
    parser.add_argument("config", nargs="?", help="Optional YAML file of EvalConfig fields (flags override it).")
    parser.add_argument("--model", help="Checkpoint folder or Hub id (AutoModelForImageTextToText + AutoProcessor).")
    parser.add_argument("--benchmarks",
                        help="Comma-separated: vqa_rad, slake, slake_en, slake_zh, path_vqa, pmc_vqa, omnimedvqa, "
                             "medxpertqa_mm, mmmu_hm, medqa, medmcqa, pubmedqa, demo; or 'infimed' for the seven of "
                             "the InfiMed table (default: demo).")
    parser.add_argument("--data-dir", help="Folder with local benchmark copies (<name>/ each); Hub ids otherwise. "
                                           "For `demo`: the `infimed demo-data` output folder.")
    parser.add_argument("--output", help="Output folder (default: eval-output).")
    parser.add_argument("--predictions", help="Score this JSONL ({id, prediction[, benchmark]} per line) instead of "
                                              "running a model.")
    parser.add_argument("--limit", type=int, help="Evaluate the first N items of each benchmark.")
    parser.add_argument("--batch-size", type=int, help="Items per generate call (default 8).")
    parser.add_argument("--max-new-tokens", type=int,
                        help="Tokens generated per item (default 64: a letter, yes/no or a phrase).")
    parser.add_argument("--num-image-tokens", type=int,
                        help="Visual tokens per image (InfiMed models; default: the checkpoint's).")
    parser.add_argument("--max-images", type=int, help="Keep at most this many images per item.")
    parser.add_argument("--max-image-side", type=int, help="Downscale images larger than this (pixels, longer side).")
    parser.add_argument("--seed", type=int, help="Seed (default 42, as MedEvalKit).")
    parser.add_argument("--system-prompt", help="System message placed before every question.")
    parser.add_argument("--reasoning", action="store_true", default=None,
                        help="Reasoning prompts: final answer in \\boxed{}.")
    parser.add_argument("--medevalkit-compat", action="store_true", default=None,
                        help="Also report MedEvalKit's scoring (its parser fallbacks and metric faults) beside ours.")
    parser.add_argument("--judge-base-url", help="OpenAI-compatible endpoint of an LLM judge for open answers.")
    parser.add_argument("--judge-model", help="Model name of the judge at that endpoint.")
    parser.add_argument("--judge-api-key-env", help="Environment variable with the judge's API key (OPENAI_API_KEY).")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")


def build_config(args: argparse.Namespace):
    """EvalConfig from the optional YAML file with the flags that were given on top."""
    from infimed.evaluation.runner import EvalConfig

    values: dict = {}
    if args.config:
        import yaml

        with open(args.config, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{args.config} must hold a mapping of EvalConfig fields, got {type(values).__name__}.")
    values = {**values, "generation": dict(values.get("generation") or {})}
    for flag, (section, name) in _FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            (values["generation"] if section else values)[name] = value
    if args.no_progress:
        values["progress"] = False
    return EvalConfig.from_dict(values)


def main(args: argparse.Namespace) -> int:
    import json
    import logging

    from infimed.evaluation.runner import run_evaluation

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = build_config(args)
    results = run_evaluation(config)
    summary = {name: round(m["accuracy"], 4) for name, m in results["benchmarks"].items()}
    print(json.dumps({"output": config.output_dir, "accuracy": summary}))
    return 0
