"""`infimed push-model`: upload a checkpoint with its code, processor and card to the Hub in one commit.

    infimed push-model runs/demo/grpo --repo my-org/infimed-demo --private
    infimed push-model runs/demo/grpo --repo my-org/infimed-demo --dry-run   # checks and file list only

The token comes from `HF_TOKEN` or `hf auth login`; it is never printed or written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from infimed.core.config import ConfigParser, config_from_args
from infimed.hub import check_model_folder, push_model
from infimed.hub.checks import MODEL_FILE_PATTERNS, select_files

from .push_dataset import PushArguments, report_push

__all__ = ["PushModelArguments", "add_arguments", "main"]


@dataclass
class PushModelArguments(PushArguments):
    folder: str = field(
        metadata={"help": "Checkpoint folder written by save_pretrained (model + processor).", "positional": True}
    )
    dry_run: bool = field(default=False, metadata={"help": "Run the checks and list the files; upload nothing."})


def add_arguments(parser: ConfigParser) -> None:
    parser.add_config_arguments(PushModelArguments)


def main(namespace) -> int:
    args = config_from_args(PushModelArguments, namespace)
    if not args.dry_run:
        return report_push(push_model, args, "")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    problems = check_model_folder(args.folder)
    for problem in problems:
        print(f"problem: {problem}")
    files, skipped = select_files(args.folder, MODEL_FILE_PATTERNS) if not problems else ([], [])
    for rel in files:
        print(f"would upload: {rel}")
    for rel in skipped:
        print(f"would skip: {rel}")
    return 1 if problems else 0
