"""`infimed init`: create an InfiMed checkpoint from a preset or from pretrained parts.

    infimed init --preset tiny --output runs/tiny
    infimed init --preset infimed-foundation-1.7b --output runs/base \
        --vision-model google/siglip-so400m-patch14-384 --language-model Qwen/Qwen3-1.7B
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="tiny | infimed-foundation-1.7b | infimed-foundation-4b")
    parser.add_argument("--output", required=True, help="Folder to write the checkpoint to.")
    parser.add_argument("--vision-model", default=None, help="Pretrained vision encoder (Hub id or local path).")
    parser.add_argument("--language-model", default=None, help="Pretrained causal LM (Hub id or local path).")
    parser.add_argument("--num-image-tokens", type=int, default=None, help="Visual tokens per image (square).")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--seed", type=int, default=0, help="Seed for the new (projector or random) weights.")
    parser.add_argument("--print-parameters", action="store_true", help="Print parameter counts of the preset.")


def main(args: argparse.Namespace) -> int:
    import torch

    from infimed.modeling.composition import init_checkpoint
    from infimed.modeling.presets import count_parameters

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
