"""`infimed push-model`: upload a checkpoint with its code, processor and card to the Hub in one commit.

    infimed push-model runs/demo/grpo --repo my-org/infimed-demo --private
    infimed push-model runs/demo/grpo --repo my-org/infimed-demo --dry-run   # checks and file list only

The token comes from `HF_TOKEN` or `hf auth login`; it is never printed or written.
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="Checkpoint folder written by save_pretrained (model + processor).")
    parser.add_argument("--repo", required=True, help="Target model repo, ORG/NAME; created if missing.")
    parser.add_argument("--private", action="store_true", help="Create the repo as private (ignored if it exists).")
    parser.add_argument("--revision", default=None, help="Branch to commit to (created from main if missing).")
    parser.add_argument("--commit-message", default=None, help="Commit summary (default names the folder).")
    parser.add_argument("--dry-run", action="store_true", help="Run the checks and list the files; upload nothing.")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from huggingface_hub.errors import HfHubHTTPError

    from infimed.hub import check_model_folder, push_model
    from infimed.hub.checks import MODEL_FILE_PATTERNS, select_files

    if args.dry_run:
        problems = check_model_folder(args.folder)
        for problem in problems:
            print(f"problem: {problem}")
        files, skipped = select_files(args.folder, MODEL_FILE_PATTERNS) if not problems else ([], [])
        for rel in files:
            print(f"would upload: {rel}")
        for rel in skipped:
            print(f"would skip: {rel}")
        return 1 if problems else 0
    try:
        url = push_model(args.folder, args.repo, private=args.private, revision=args.revision,
                         commit_message=args.commit_message)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except HfHubHTTPError as err:  # no access to the namespace, bad token, server error
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"Pushed {args.folder} to {args.repo}: {url}")
    return 0
