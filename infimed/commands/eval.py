"""`infimed eval`: MedEvalKit-compatible medical benchmarks with correct scoring and batched generation.

    infimed eval --model runs/tiny --benchmarks demo --data-dir demo-output/data --output runs/tiny/eval
    infimed eval --model OpenGVLab/... --benchmarks infimed --data-dir /data/medbench --output eval/ --batch-size 16
    infimed eval --predictions other_system.jsonl --benchmarks vqa_rad --data-dir /data/medbench --output eval/

Writes `results.json` (with model-index entries for model cards), `results.md`, `results.png`, and per benchmark
`predictions.jsonl` + `metrics.json`. A rerun with the same output folder resumes from the per-item cache.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="Checkpoint folder or Hub id (AutoModelForImageTextToText + AutoProcessor).")
    parser.add_argument("--benchmarks", default="demo",
                        help="Comma-separated: vqa_rad, slake, slake_en, slake_zh, path_vqa, pmc_vqa, omnimedvqa, "
                             "medxpertqa_mm, mmmu_hm, medqa, medmcqa, pubmedqa, demo; or 'infimed' for the seven of "
                             "the InfiMed table.")
    parser.add_argument("--data-dir", help="Folder with local benchmark copies (<name>/ each); Hub ids otherwise. "
                                           "For `demo`: the `infimed demo-data` output folder.")
    parser.add_argument("--output", required=True, help="Output folder.")
    parser.add_argument("--predictions", help="Score this JSONL ({id, prediction[, benchmark]} per line) instead of "
                                              "running a model.")
    parser.add_argument("--limit", type=int, help="Evaluate the first N items of each benchmark.")
    parser.add_argument("--batch-size", type=int, default=8, help="Items per generate call (default 8).")
    parser.add_argument("--max-new-tokens", type=int, default=64,
                        help="Tokens generated per item (default 64: a letter, yes/no or a phrase).")
    parser.add_argument("--num-image-tokens", type=int,
                        help="Visual tokens per image (InfiMed models; default: the checkpoint's).")
    parser.add_argument("--max-images", type=int, help="Keep at most this many images per item.")
    parser.add_argument("--max-image-side", type=int, help="Downscale images larger than this (pixels, longer side).")
    parser.add_argument("--seed", type=int, default=42, help="Seed (default 42, as MedEvalKit).")
    parser.add_argument("--system-prompt", help="System message placed before every question.")
    parser.add_argument("--reasoning", action="store_true", help="Reasoning prompts: final answer in \\boxed{}.")
    parser.add_argument("--medevalkit-compat", action="store_true",
                        help="Also report MedEvalKit's scoring (its parser fallbacks and metric faults) beside ours.")
    parser.add_argument("--judge-base-url", help="OpenAI-compatible endpoint of an LLM judge for open answers.")
    parser.add_argument("--judge-model", help="Model name of the judge at that endpoint.")
    parser.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="Environment variable with the API key.")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")


def main(args: argparse.Namespace) -> int:
    import json
    import logging

    from infimed.evaluation.generation import GenerationOptions
    from infimed.evaluation.runner import EvalConfig, run_evaluation

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = EvalConfig(
        benchmarks=args.benchmarks,
        output_dir=args.output,
        model=args.model,
        data_dir=args.data_dir,
        predictions=args.predictions,
        limit=args.limit,
        seed=args.seed,
        system_prompt=args.system_prompt,
        reasoning=args.reasoning,
        medevalkit_compat=args.medevalkit_compat,
        judge_base_url=args.judge_base_url,
        judge_model=args.judge_model,
        judge_api_key_env=args.judge_api_key_env,
        device=args.device,
        generation=GenerationOptions(
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            num_image_tokens=args.num_image_tokens,
            max_images=args.max_images,
            max_image_side=args.max_image_side,
        ),
        progress=not args.no_progress,
    )
    results = run_evaluation(config)
    summary = {name: round(m["accuracy"], 4) for name, m in results["benchmarks"].items()}
    print(json.dumps({"output": args.output, "accuracy": summary}))
    return 0
