"""`infimed synthesize-cot CONFIG.yaml`: teacher-written chain-of-thought SFT data, kept by rejection sampling.

    infimed synthesize-cot recipes/cot/demo.yaml
    infimed synthesize-cot my_cot.yaml --output runs/cot --teacher-model Qwen/Qwen2.5-VL-72B-Instruct --max-samples 100

Writes ``OUTPUT/`` (a `datasets.DatasetDict` with split ``train``, loadable with `load_from_disk`, ready for an SFT
stage) and ``OUTPUT/report.json`` (candidates, kept, rejected by reason, teacher identity).
"""

from __future__ import annotations

import json
import logging
import os

import datasets
from transformers import set_seed

from infimed.core.config import ConfigParser, config_from_args
from infimed.core.endpoints import make_client
from infimed.training.cot_synthesis import CoTSynthesisConfig, synthesize_cot

__all__ = ["add_arguments", "main"]


def add_arguments(parser: ConfigParser) -> None:
    parser.add_config_arguments(
        CoTSynthesisConfig, config_file=True, sections={"teacher": "teacher_", "selection": ""},
        aliases={"output_dir": "--output", "teacher.base_url": "--teacher-url"},
    )


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = config_from_args(CoTSynthesisConfig, args, config_file=args.config)
    if os.path.isdir(config.dataset):
        loaded = datasets.load_from_disk(config.dataset)
        if isinstance(loaded, datasets.DatasetDict):
            if config.split not in loaded:
                raise ValueError(f"{config.dataset} has splits {list(loaded)}, not `split: {config.split}`.")
            loaded = loaded[config.split]
    else:
        loaded = datasets.load_dataset(config.dataset, split=config.split)

    set_seed(config.seed)  # a local teacher samples with torch: same seed, same candidates
    client = make_client(config.teacher)
    output, report = synthesize_cot(loaded, client, config)
    os.makedirs(config.output_dir, exist_ok=True)
    datasets.DatasetDict({"train": output}).save_to_disk(config.output_dir)
    with open(os.path.join(config.output_dir, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    keys = ("samples_selected", "candidates", "kept", "kept_by_style", "rejected", "by_style")
    summary = {k: report[k] for k in keys}
    print(json.dumps(summary, indent=2))
    print(f"Wrote {report['kept']} traces to {config.output_dir} (report: {config.output_dir}/report.json)")
    return 0
