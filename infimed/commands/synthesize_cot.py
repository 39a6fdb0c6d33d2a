"""`infimed synthesize-cot CONFIG.yaml`: teacher-written chain-of-thought SFT data, kept by rejection sampling.

    infimed synthesize-cot recipes/cot/demo.yaml
    infimed synthesize-cot my_cot.yaml --output runs/cot --teacher-model Qwen/Qwen2.5-VL-72B-Instruct

Writes ``OUTPUT/`` (a `datasets.DatasetDict` with split ``train``, loadable with `load_from_disk`, ready for an SFT
stage) and ``OUTPUT/report.json`` (candidates, kept, rejected by reason, teacher identity).
"""

from __future__ import annotations

import argparse

from infimed.core.datasets import load_table

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="Synthesis YAML (fields of `CoTSynthesisConfig`, see recipes/cot/demo.yaml).")
    parser.add_argument("--output", default=None, help="Override `output_dir`.")
    parser.add_argument("--dataset", default=None, help="Override `dataset` (a save_to_disk folder or Hub id).")
    parser.add_argument("--teacher-model", default=None, help="Override `teacher.model`.")
    parser.add_argument("--teacher-url", default=None, help="Override `teacher.base_url` (OpenAI-compatible).")
    parser.add_argument("--max-samples", type=int, default=None, help="Override `selection.max_samples`.")


def main(args: argparse.Namespace) -> int:
    import json
    import logging
    import os

    import datasets

    from infimed.training.cot_synthesis import build_teacher, load_cot_config, synthesize_cot

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_cot_config(args.config, output_dir=args.output, dataset=args.dataset)
    if args.teacher_model is not None:
        config.teacher.model = args.teacher_model
    if args.teacher_url is not None:
        config.teacher.base_url = args.teacher_url
    if args.max_samples is not None:
        config.selection.max_samples = args.max_samples

    loaded = load_table(config.dataset, config.split)

    from transformers import set_seed

    set_seed(config.seed)  # a local teacher samples with torch: same seed, same candidates
    client = build_teacher(config.teacher)
    output, report = synthesize_cot(loaded, client, config)
    os.makedirs(config.output_dir, exist_ok=True)
    datasets.DatasetDict({"train": output}).save_to_disk(config.output_dir)
    with open(os.path.join(config.output_dir, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    summary = {k: report[k] for k in ("samples_selected", "candidates", "kept", "rejected", "by_style")}
    print(json.dumps(summary, indent=2))
    print(f"Wrote {report['kept']} traces to {config.output_dir} (report: {config.output_dir}/report.json)")
    return 0
