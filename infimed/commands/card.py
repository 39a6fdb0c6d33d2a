"""`infimed card`: render the model card (README.md) of a checkpoint from its recipe and evaluation results.

    infimed card --model runs/demo/grpo --eval-results runs/demo/eval/results.json --recipe recipes/demo.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Checkpoint folder; the card is written to MODEL/README.md.")
    parser.add_argument("--eval-results", default=None, help="results.json written by `infimed eval`.")
    parser.add_argument("--recipe", default=None, help="Recipe YAML that trained the checkpoint.")
    parser.add_argument("--recipe-summary", default=None,
                        help="recipe_summary.json of the run (default: found next to or above --model).")
    parser.add_argument("--repo-id", default=None, help="Hub id the card will live under (used in the example).")
    parser.add_argument("--model-name", default=None, help="Card title (default: repo name, else folder name).")
    parser.add_argument("--license", default="apache-2.0", help="Licence id for the metadata (default apache-2.0).")
    parser.add_argument("--base-model", action="append", default=None, help="Base model Hub id (repeatable).")
    parser.add_argument("--dataset", action="append", default=None, help="Training dataset Hub id (repeatable).")
    parser.add_argument("--stdout", action="store_true", help="Print the card instead of writing README.md.")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from infimed.model_cards import render_model_card, write_model_card

    kwargs = dict(eval_results=args.eval_results, recipe=args.recipe, recipe_summary=args.recipe_summary,
                  repo_id=args.repo_id, model_name=args.model_name, license=args.license,
                  base_model=args.base_model, datasets=args.dataset)
    try:
        if args.stdout:
            print(render_model_card(args.model, **kwargs))
            return 0
        path = write_model_card(args.model, **kwargs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Wrote {path}")
    return 0
