"""`infimed train RECIPE.yaml`: run a multi-stage training recipe (continual pretraining, packed SFT, GRPO).

    infimed train recipes/demo.yaml
    infimed train recipes/infimed-foundation-1.7b.yaml --output runs/f17 --stage sft-3 --resume
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m infimed.cli train recipes/demo.yaml
    torchrun --nproc_per_node 8 -m infimed.cli train recipes/demo.yaml

Under a multi-process launch only the main process copies the recipe, writes summaries, pushes and prints.
"""

from __future__ import annotations

import argparse

from infimed.hub import push_model
from infimed.training.distributed import is_main_process
from infimed.training.recipe import load_recipe, run_recipe

__all__ = ["add_arguments", "main", "push_if_asked"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="Recipe YAML file (see recipes/).")
    parser.add_argument("--stage", default=None, help="Run only this stage (it starts from the previous one's output).")
    parser.add_argument("--resume", action="store_true",
                        help="Skip finished stages and resume an interrupted one from its last checkpoint.")
    parser.add_argument("--output", default=None, help="Output folder; overrides the recipe's `output_dir`.")


def push_if_asked(spec, summary: dict) -> dict:
    """Upload a finished stage that sets `push_to_hub: ORG/NAME` (with `infimed.hub.push_model`); its summary entry."""
    if not spec.push_to_hub:
        return {}
    return {"pushed_to": push_model(summary["output_dir"], repo_id=spec.push_to_hub)}


def main(args: argparse.Namespace) -> int:
    import json
    import logging
    import os
    import shutil

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    recipe = load_recipe(args.recipe)
    output_dir = args.output or recipe.output_dir
    # Kept beside recipe_summary.json: model cards describe the stages (data mix, visual tokens, trainable modules)
    # from it, also when a stage is pushed to the Hub on its own.
    main = is_main_process()
    if main:
        os.makedirs(output_dir, exist_ok=True)
        if os.path.abspath(args.recipe) != os.path.abspath(os.path.join(output_dir, "recipe.yaml")):
            shutil.copyfile(args.recipe, os.path.join(output_dir, "recipe.yaml"))
    # run_recipe calls `after_stage` (the push) on the main process only
    summary = run_recipe(recipe, output_dir=args.output, stage=args.stage, resume=args.resume,
                         after_stage=push_if_asked)
    if not main:
        return 0
    short = {name: {k: s.get(k) for k in ("steps", "seconds", "final_loss", "packing_efficiency", "dropped")}
             for name, s in summary["stages"].items()}
    print(json.dumps({"output_dir": summary["output_dir"], "stages": short}, indent=2))
    return 0
