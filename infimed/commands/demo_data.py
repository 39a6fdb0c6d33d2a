"""``infimed demo-data``: write the synthetic medical VQA demo dataset.

    infimed demo-data --output demo-output/data
    infimed demo-data --output /tmp/demo --num-samples 200 --num-eval 50 --seed 1
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infimed.core.config import ConfigParser, config_from_args
from infimed.data.demo import DemoDataConfig, save_demo_dataset

__all__ = ["DemoDataArguments", "add_arguments", "main"]


@dataclass
class DemoDataArguments:
    output: str = field(metadata={"help": "Directory for the DatasetDict (load with load_from_disk)."})


def add_arguments(parser: ConfigParser) -> None:
    parser.add_config_arguments(DemoDataArguments)
    parser.add_config_arguments(DemoDataConfig)


def main(namespace) -> int:
    args = config_from_args(DemoDataArguments, namespace)
    config = config_from_args(DemoDataConfig, namespace)
    info = save_demo_dataset(config, args.output)
    splits = ", ".join(f"{name} {n}" for name, n in info["splits"].items())
    corrupted = ", ".join(f"{reason} {n}" for reason, n in info["corrupted"].items()) or "none"
    print(f"Wrote the demo dataset to {args.output}: {splits} samples in {info['seconds']} s.")
    print(f"  corrupted train samples (flagged in `corrupted`): {corrupted}")
    for kind, answers in info["answers"]["train"].items():
        print(f"  train {kind}: " + ", ".join(f"{a}={n}" for a, n in answers.items()))
    example = info["dicom_example"]
    print(f"  DICOM example: {example['path']} ({example['question']} -> {example['answer']})")
    return 0
