"""`infimed eval`: MedEvalKit-compatible medical benchmarks with correct scoring and batched generation.

    infimed eval --model runs/tiny --benchmarks demo --data-dir demo-output/data --output runs/tiny/eval
    infimed eval --model OpenGVLab/... --benchmarks infimed --data-dir /data/medbench --output eval/ --batch-size 16
    infimed eval --predictions other_system.jsonl --benchmarks vqa_rad --data-dir /data/medbench --output eval/
    infimed eval eval.yaml --limit 50          # EvalConfig fields in YAML; flags override them
    infimed eval --model runs/rl --protocol reasoning --benchmarks infimed --data-dir /data/medbench --output eval/
    infimed eval --endpoint http://localhost:8000/v1 --served-model infimed-rl-3b --protocol medevalkit \
        --benchmarks infimed --data-dir /data/medbench --output eval/     # a vLLM / SGLang / TGI server

Writes `results.json` (with model-index entries for model cards), `results.md`, `results.png`, and per benchmark
`predictions.jsonl` + `metrics.json`. A rerun with the same output folder resumes from the per-item cache.
`results.json` names the protocol, prompt set, parser and judge; generations cut by the token limit are counted.
"""

from __future__ import annotations

import json
import logging

from infimed.core.config import ConfigParser, config_from_args
from infimed.evaluation.runner import EvalConfig, run_evaluation

__all__ = ["add_arguments", "main"]


def add_arguments(parser: ConfigParser) -> None:
    # Defaults live in EvalConfig / GenerationOptions / EndpointConfig (one place); a flag left unset keeps the YAML
    # or default value.
    parser.add_config_arguments(
        EvalConfig, config_file=True, sections={"generation": "", "judge": "judge_"},
        aliases={"output_dir": "--output"},
    )


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = config_from_args(EvalConfig, args, config_file=args.config)
    results = run_evaluation(config)
    summary = {name: round(m["accuracy"], 4) for name, m in results["benchmarks"].items()}
    truncated = {name: m["truncated"] for name, m in results["benchmarks"].items() if m.get("truncated")}
    print(json.dumps({"output": config.output_dir, "protocol": config.protocol, "accuracy": summary,
                      **({"truncated": truncated} if truncated else {})}))
    return 0
