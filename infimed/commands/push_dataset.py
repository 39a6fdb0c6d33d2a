"""`infimed push-dataset`: upload a curated dataset folder (parquet shards + card + reports) in one commit.

    infimed push-dataset curated/ --repo my-org/infimed-curated --private

Load it back with `datasets.load_dataset("my-org/infimed-curated")`. The token comes from `HF_TOKEN` or
`hf auth login`; it is never printed or written.
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="Folder written by `infimed curate --output DIR`.")
    parser.add_argument("--repo", required=True, help="Target dataset repo, ORG/NAME; created if missing.")
    parser.add_argument("--private", action="store_true", help="Create the repo as private (ignored if it exists).")
    parser.add_argument("--revision", default=None, help="Branch to commit to (created from main if missing).")
    parser.add_argument("--commit-message", default=None, help="Commit summary (default names the folder).")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from huggingface_hub.errors import HfHubHTTPError

    from infimed.hub import push_dataset

    try:
        url = push_dataset(args.folder, args.repo, private=args.private, revision=args.revision,
                           commit_message=args.commit_message)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except HfHubHTTPError as err:  # no access to the namespace, bad token, server error
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"Pushed {args.folder} to dataset {args.repo}: {url}")
    return 0
