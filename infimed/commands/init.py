"""`infimed init`: create an InfiMed checkpoint from a preset or from pretrained parts.

    infimed init --preset tiny --output runs/tiny
    infimed init --preset tiny-qwen2.5-vl --output runs/tiny-qwen     # the 3B recipes' architecture, CPU-sized
    infimed init --preset infimed-foundation-1.7b --output runs/base \
        --vision-model google/siglip-so400m-patch14-384 --language-model Qwen/Qwen3-1.7B
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import torch

from infimed.core.config import ConfigParser, config_from_args
from infimed.core.composition import init_checkpoint
from infimed.modeling.presets import count_parameters

__all__ = ["InitArguments", "add_arguments", "main"]


@dataclass
class InitArguments:
    output: str = field(metadata={"help": "Folder to write the checkpoint to."})
    preset: str = field(default="tiny", metadata={"help": "tiny | tiny-qwen2.5-vl | infimed-foundation-1.7b | infimed-foundation-4b"})
    vision_model: str | None = field(
        default=None, metadata={"help": "Pretrained vision encoder (Hub id or local path)."}
    )
    language_model: str | None = field(default=None, metadata={"help": "Pretrained causal LM (Hub id or local path)."})
    num_image_tokens: int | None = field(default=None, metadata={"help": "Visual tokens per image (square)."})
    # float32: the tiny preset trains on CPU, where bf16 matmuls are slow; pass bfloat16 for the real presets on GPU
    dtype: Literal["float32", "bfloat16", "float16"] = field(
        default="float32", metadata={"help": "Weight dtype of the written checkpoint."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for the new (projector or random) weights."})
    print_parameters: bool = field(default=False, metadata={"help": "Print parameter counts of the preset."})


def add_arguments(parser: ConfigParser) -> None:
    parser.add_config_arguments(InitArguments)


def main(namespace) -> int:
    args = config_from_args(InitArguments, namespace)
    if args.print_parameters:
        print(json.dumps({args.preset: count_parameters(args.preset)}, indent=2))
    path = init_checkpoint(
        args.preset,
        args.output,
        vision_model=args.vision_model,
        language_model=args.language_model,
        num_image_tokens=args.num_image_tokens,
        seed=args.seed,
        dtype=getattr(torch, args.dtype),
    )
    print(f"Wrote an InfiMed checkpoint ({args.preset}) to {path}")
    return 0
