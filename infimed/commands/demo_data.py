"""``infimed demo-data``: write the synthetic medical VQA demo dataset.

    infimed demo-data --output demo-output/data
    infimed demo-data --output /tmp/demo --num-samples 200 --num-eval 50 --seed 1
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infimed.data.demo import DemoDataConfig

    defaults = DemoDataConfig.__dataclass_fields__

    def help_of(name: str) -> str:
        return f"{defaults[name].metadata['help']} (default: {defaults[name].default})"

    parser.add_argument("--output", required=True, help="Directory for the DatasetDict (load with load_from_disk).")
    parser.add_argument("--num-samples", type=int, default=defaults["num_samples"].default, help=help_of("num_samples"))
    parser.add_argument("--num-eval", type=int, default=defaults["num_eval"].default, help=help_of("num_eval"))
    parser.add_argument("--seed", type=int, default=defaults["seed"].default, help=help_of("seed"))
    parser.add_argument(
        "--corrupted-per-reason", type=int, default=defaults["corrupted_per_reason"].default,
        help=help_of("corrupted_per_reason"),
    )


def main(args: argparse.Namespace) -> int:
    from infimed.data.demo import DemoDataConfig, save_demo_dataset

    config = DemoDataConfig(
        num_samples=args.num_samples, num_eval=args.num_eval, seed=args.seed,
        corrupted_per_reason=args.corrupted_per_reason,
    )
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
