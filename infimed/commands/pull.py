"""`infimed pull`: download a model (or dataset) repo into a plain local folder.

    infimed pull my-org/infimed-demo --local-dir models/infimed-demo [--revision v1]
    infimed pull my-org/infimed-curated --repo-type dataset --local-dir data/curated
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Literal

from huggingface_hub.errors import HfHubHTTPError

from infimed.core.config import ConfigParser, config_from_args
from infimed.hub import pull

__all__ = ["PullArguments", "add_arguments", "main"]


@dataclass
class PullArguments:
    repo: str = field(metadata={"help": "Repo id, ORG/NAME.", "positional": True})
    local_dir: str = field(metadata={"help": "Folder to download into (created if missing)."})
    revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit (default: main)."})
    repo_type: Literal["model", "dataset"] = field(default="model", metadata={"help": "Kind of repo."})


def add_arguments(parser: ConfigParser) -> None:
    parser.add_config_arguments(PullArguments)


def main(namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = config_from_args(PullArguments, namespace)
    try:
        path = pull(args.repo, args.local_dir, revision=args.revision, repo_type=args.repo_type)
    except (HfHubHTTPError, ValueError) as err:  # not found / no access / bad revision: one clear line, no traceback
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"Pulled {args.repo} into {path}")
    return 0
