"""`infimed push-dataset`: upload a curated dataset folder (parquet shards + card + reports) in one commit.

    infimed push-dataset curated/ --repo my-org/infimed-curated --private

Load it back with `datasets.load_dataset("my-org/infimed-curated")`. The token comes from `HF_TOKEN` or
`hf auth login`; it is never printed or written.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from huggingface_hub.errors import HfHubHTTPError

from infimed.core.config import ConfigParser, config_from_args
from infimed.hub import push_dataset

__all__ = ["PushArguments", "add_arguments", "main", "report_push"]


@dataclass
class PushArguments:
    """What to upload where; `infimed push-model` adds `--dry-run`."""

    folder: str = field(metadata={"help": "Folder written by `infimed curate --output DIR`.", "positional": True})
    repo: str = field(metadata={"help": "Target repo, ORG/NAME; created if missing."})
    private: bool = field(default=False, metadata={"help": "Create the repo as private (ignored if it exists)."})
    revision: str | None = field(default=None, metadata={"help": "Branch to commit to (created from main if missing)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit summary (default names the folder)."})


def add_arguments(parser: ConfigParser) -> None:
    parser.add_config_arguments(PushArguments)


def report_push(upload, args: PushArguments, what: str) -> int:
    """Run ``upload(folder, repo, ...)``; print the URL, or one error line (no traceback) and return 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        url = upload(args.folder, args.repo, private=args.private, revision=args.revision,
                     commit_message=args.commit_message)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except HfHubHTTPError as err:  # no access to the namespace, bad token, server error
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"Pushed {args.folder} to {what}{args.repo}: {url}")
    return 0


def main(namespace) -> int:
    return report_push(push_dataset, config_from_args(PushArguments, namespace), "dataset ")
