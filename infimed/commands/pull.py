"""`infimed pull`: download a model (or dataset) repo into a plain local folder.

    infimed pull my-org/infimed-demo --local-dir models/infimed-demo [--revision v1]
    infimed pull my-org/infimed-curated --repo-type dataset --local-dir data/curated
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo", help="Repo id, ORG/NAME.")
    parser.add_argument("--local-dir", required=True, help="Folder to download into (created if missing).")
    parser.add_argument("--revision", default=None, help="Branch, tag or commit (default: main).")
    parser.add_argument("--repo-type", default="model", choices=["model", "dataset"], help="Kind of repo.")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from huggingface_hub.errors import HfHubHTTPError

    from infimed.hub import pull

    try:
        path = pull(args.repo, args.local_dir, revision=args.revision, repo_type=args.repo_type)
    except (HfHubHTTPError, ValueError) as err:  # not found / no access / bad revision: one clear line, no traceback
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"Pulled {args.repo} into {path}")
    return 0
