"""`infimed card`: render the model card (README.md) of a checkpoint from its recipe and evaluation results.

    infimed card --model runs/demo/grpo --eval-results runs/demo/eval/results.json --recipe recipes/demo.yaml
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from infimed.core.config import ConfigParser, config_from_args
from infimed.model_cards import render_model_card, write_model_card

__all__ = ["CardArguments", "add_arguments", "main"]


@dataclass
class CardArguments:
    model: str = field(metadata={"help": "Checkpoint folder; the card is written to MODEL/README.md."})
    eval_results: str | None = field(default=None, metadata={"help": "results.json written by `infimed eval`."})
    recipe: str | None = field(default=None, metadata={"help": "Recipe YAML that trained the checkpoint."})
    recipe_summary: str | None = field(
        default=None, metadata={"help": "recipe_summary.json of the run (default: found next to or above --model)."}
    )
    repo_id: str | None = field(
        default=None, metadata={"help": "Hub id the card will live under (used in the example)."}
    )
    model_name: str | None = field(
        default=None, metadata={"help": "Card title (default: repo name, else folder name)."}
    )
    license: str = field(default="apache-2.0", metadata={"help": "Licence id for the metadata."})
    base_model: list[str] | None = field(default=None, metadata={"help": "Base model Hub id (repeatable)."})
    dataset: list[str] | None = field(default=None, metadata={"help": "Training dataset Hub id (repeatable)."})
    stdout: bool = field(default=False, metadata={"help": "Print the card instead of writing README.md."})


def add_arguments(parser: ConfigParser) -> None:
    parser.add_config_arguments(CardArguments)


def main(namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = config_from_args(CardArguments, namespace)
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
